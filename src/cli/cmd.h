/*
 * cmd.h: one entry point per subcommand; each parses its own arguments and calls a module.
 * Returns the process exit code: 0 success, 1 failure, 2 usage or configuration error.
 */
#ifndef MOAT_CLI_CMD_H
#define MOAT_CLI_CMD_H

int moat_cmd_serve(int argc, char **argv);
int moat_cmd_proxy(int argc, char **argv);
/* Exit codes of get and trace are the client's (client/cause.h). */
int moat_cmd_get(int argc, char **argv);
int moat_cmd_trace(int argc, char **argv);
int moat_cmd_check(int argc, char **argv);
/* The certificate toolkit (docs/pki.md). */
int moat_cmd_key(int argc, char **argv);
int moat_cmd_csr(int argc, char **argv);
int moat_cmd_ca(int argc, char **argv);
int moat_cmd_cert(int argc, char **argv);
int moat_cmd_verify(int argc, char **argv);
int moat_cmd_trust(int argc, char **argv);
/* ACME: certificates from Let's Encrypt or any RFC 8555 CA (docs/acme.md). */
int moat_cmd_acme(int argc, char **argv);
/* A running server's admin interface: `what` is status, reload, stop, certs, upstreams or
 * metrics (docs/admin.md). */
int moat_cmd_admin(const char *what, int argc, char **argv);

#endif
