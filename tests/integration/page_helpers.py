"""Headless Chromium for the tests of moat's pages (check --html, trace --html): render a page
to a screenshot or its DOM, and tell a screenshot from a blank one by decoding its PNG."""

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def screenshot(tmp_path, page, name, size="1100,1600", min_bytes=20000):
    """Render page into build/screenshots/NAME (kept for people to look at), after checking
    that Chromium wrote one and that it is not blank."""
    shot = tmp_path / name
    chromium(tmp_path, ["--screenshot=%s" % shot, "--window-size=%s" % size], page)
    assert shot.exists(), "chromium wrote no screenshot of %s" % page
    assert shot.stat().st_size > min_bytes, shot.stat().st_size
    assert_not_blank(shot)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / name)
    return shot


def png_pixels(path, max_rows=900):
    """Decode the first rows of an 8-bit RGB or RGBA PNG (what Chromium writes) into rows of
    (r, g, b) tuples, undoing each row's filter (PNG spec section 9)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, ctype = 8, [], 0, 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    bpp = 4 if ctype == 6 else 3
    stride = width * bpp
    rows_wanted = min(height, max_rows)
    raw = zlib.decompressobj().decompress(b"".join(idat), rows_wanted * (stride + 1))
    prev = bytearray(stride)
    out = []
    for y in range(rows_wanted):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        ftype, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                cur[i] = (cur[i] + a) & 0xFF
            elif ftype == 2:
                cur[i] = (cur[i] + b) & 0xFF
            elif ftype == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out.append([tuple(cur[x:x + 3]) for x in range(0, stride, bpp)])
        prev = cur
    return out


def assert_not_blank(path):
    rows = png_pixels(path)
    counts = {}
    for row in rows[::3]:
        for px in row[::3]:
            counts[px] = counts.get(px, 0) + 1
    total = sum(counts.values())
    background = max(counts.values())
    assert len(counts) > 30, "only %d colours: a blank page?" % len(counts)
    assert total - background > total * 0.03, "almost all one colour"


def chromium(tmp_path, args, page_path):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir(exist_ok=True)
    profile = tmp_path / ("profile-%s" % os.urandom(4).hex())
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=%s" % profile]
    return subprocess.run(base + args + [page_path.as_uri()], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
