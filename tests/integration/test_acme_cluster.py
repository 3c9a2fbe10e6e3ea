"""ACME in a cluster (docs/cluster.md): three moat nodes sharing one Redis and one Pebble order one
certificate for a name, not three, and all serve it. The nodes share Pebble's ports the way
nodes behind an L4 balancer share an address (SO_REUSEPORT: the kernel hands each connection
to any of them), so Pebble's HTTP-01 check reaches whichever node the kernel picks, not
necessarily the one that ordered: the answer must be on every node. Each node also has a port
of its own, where the test asks it for the certificate it serves.
"""

import re
import subprocess

import pytest

from acme_helpers import AcmeFront, have_pebble, pebble_factory  # noqa: F401 (a fixture)
from helpers import free_port, wait_for
from test_acme_serve import peer_cert
from test_cluster import Redis, secret_file

pytestmark = pytest.mark.skipif(not have_pebble(), reason="pebble not installed")


def node_conf(m, own_port, p, front, redis, sec, www):
    return (
        "listen 127.0.0.1:%d 127.0.0.1:%d\nredirect_http 127.0.0.1:%d\nstate %s\n"
        "acme {\n    ca %s\n    ca_bundle %s\n    email ops@example.test\n    agree_tos on\n"
        "    resolver %s\n    challenge http-01\n}\n"
        "site a.example.test {\n    tls acme\n    root %s\n}\n"
        "cluster {\n    redis 127.0.0.1:%d\n    secret_file %s\n}\n"
        % (p.tls_port, own_port, p.http_port, m.state, front.directory, p.ca_bundle, p.dns_addr,
           www, redis.port, sec))


def start_nodes(moat, p, front, redis, sec, www, n=3):
    nodes = []
    for i in range(n):
        m = moat("acme%d" % (i + 1))
        own = free_port()
        m.write_config(node_conf(m, own, p, front, redis, sec, www))
        m.start(ports=[own])
        m.own_port = own
        nodes.append(m)
    return nodes


def serving_acme(m, root):
    try:
        _, issuer, serial = peer_cert(m.own_port, "a.example.test", root=root)
    except Exception:
        return None
    return serial if issuer.startswith("Pebble Intermediate CA") else None


def test_three_nodes_one_order_all_serve_it(moat, www, pebble_factory, tmp_path):
    redis = Redis(tmp_path / "redis")
    p = pebble_factory()
    front = AcmeFront(p).start()
    try:
        sec = secret_file(tmp_path / "secret")
        nodes = start_nodes(moat, p, front, redis, sec, www)
        root = p.write_root(tmp_path / "root.pem")
        assert wait_for(lambda: all(serving_acme(m, root) for m in nodes), 90, 0.5), \
            "\n\n".join(m.stderr()[-3000:] for m in nodes)
        serials = {serving_acme(m, root) for m in nodes}
        assert len(serials) == 1, serials  # the same certificate everywhere
        assert len(front.new_orders()) == 1, front.new_orders()
        logs = [m.stderr() for m in nodes]
        assert sum("certificate installed" in log for log in logs) == 1, logs
        # The two that did not order had its HTTP-01 answer too (the CA may ask any node).
        assert sum("answering the http-01 challenge for a.example.test" in log
                   for log in logs) == 2, logs
        # The others were told it was being ordered, and picked it up from the store.
        assert sum("another moat is ordering" in log for log in logs) >= 1 or \
            sum("serving its ACME certificate" in log for log in logs) == 3
        # Nothing is in the state folders: the keys are in Redis, sealed.
        for m in nodes:
            assert not list((m.state).glob("acme/certs/*/*.pem")), m.name
        keys = redis.cli("--raw", "KEYS", "moat:store:acme/certs/*").stdout.split()
        assert any(k.endswith("/ecdsa.pem") for k in keys), keys
        key = [k for k in keys if k.endswith("/ecdsa.pem")][0]
        dump = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", "GET", key],
                              capture_output=True, timeout=10).stdout
        assert dump.startswith(b"m1") and b"PRIVATE KEY" not in dump, dump[:80]
        assert b"BEGIN CERTIFICATE" not in dump
        # `moat acme status --config` reads the cluster's store (the state folders are empty).
        import json
        st = subprocess.run([nodes[0].bin, "acme", "status", "--json", "--config",
                             str(nodes[0].config)], capture_output=True, text=True, timeout=30,
                            env=nodes[0].env())
        assert st.returncode == 0, st.stdout + st.stderr
        (c,) = json.loads(st.stdout)["certificates"]
        assert c["names"] == ["a.example.test"] and c["state"] == "ok", c
        # A node started later orders nothing: the cluster has the certificate.
        late = start_nodes(moat, p, front, redis, sec, www, n=1)[0]
        assert wait_for(lambda: serving_acme(late, root) in serials, 30, 0.5), late.stderr()
        assert len(front.new_orders()) == 1
    finally:
        front.stop()
        redis.stop()


def test_a_node_killed_while_ordering_leaves_the_order_to_another(moat, www, pebble_factory,
                                                                  tmp_path):
    """The lock holder dies mid-order (SIGKILL while its lock is held: a DNS-less pebble
    validation hook stalls it); its lease lapses within 30 s and another node orders."""
    redis = Redis(tmp_path / "redis")
    p = pebble_factory()
    front = AcmeFront(p).start()
    try:
        sec = secret_file(tmp_path / "secret")
        first = start_nodes(moat, p, front, redis, sec, www, n=1)[0]
        # Kill it the moment it holds the lock, before any order exists.
        lock_seen = wait_for(lambda: redis.cli("--raw", "KEYS", "moat:lock:*").stdout.strip(),
                             30, 0.01)
        assert lock_seen, first.stderr()
        first.proc.kill()
        first.proc.wait(timeout=10)
        others = start_nodes(moat, p, front, redis, sec, www, n=2)
        root = p.write_root(tmp_path / "root.pem")
        assert wait_for(lambda: all(serving_acme(m, root) for m in others), 120, 0.5), \
            "\n\n".join(m.stderr()[-3000:] for m in others)
        assert len({serving_acme(m, root) for m in others}) == 1
    finally:
        front.stop()
        redis.stop()
