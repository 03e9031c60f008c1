#!/usr/bin/env python3
"""Hostile clients against one `gridkv node` (issue 15 §4), measured.

Starts a one-copy node from --binary and measures:

  (a) a large EXISTS command (~7 MB) sent at once, then the same command
      trickled in 1 KiB pieces: the node's CPU time for each and, where the
      binary has it, gridkv_resp_parser_scanned_bytes_total. A parser that
      re-reads the command from its start on every read costs many times
      more when trickled; an incremental one about the same.
  (b) the node's peak RSS while 5 (then 20) clients send MGETs of a 1 MB
      key and never read their replies, each on a fresh node.

Prints one table. Run it for two binaries (before and after a change) to
compare; only the standard library is used.

    scripts/hostile-clients.py --binary target/release/gridkv
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


class NodeProc:
    """One `gridkv node` child process on loopback ports."""

    def __init__(self, binary, extra):
        args = [binary, "node", "--id", "h1", "--listen", "127.0.0.1:0",
                "--resp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                "--replicas", "1", "--write-quorum", "1", "--read-quorum", "1"]
        self.proc = subprocess.Popen(args + extra, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        host, port = fields["resp"].rsplit(":", 1)
        self.resp = (host, int(port))
        host, port = fields["http"].rsplit(":", 1)
        self.http = (host, int(port))

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def metric(self, name):
        """A figure from /metrics, or None if the binary lacks it."""
        s = socket.create_connection(self.http, timeout=10)
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        body = b""
        while chunk := s.recv(65536):
            body += chunk
        s.close()
        m = re.search(rb"^" + re.escape(name.encode()) + rb" (\d+)", body, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply_line(s):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("node closed the connection: %r" % data)
        data += chunk
    return data


def command_cost(node, command, piece, pause):
    """CPU seconds and scanned bytes the node spent on one command."""
    s = socket.create_connection(node.resp)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cpu, scanned = node.cpu_seconds(), node.metric(
        "gridkv_resp_parser_scanned_bytes_total")
    if piece is None:
        s.sendall(command)
    else:
        for at in range(0, len(command), piece):
            s.sendall(command[at:at + piece])
            time.sleep(pause)
    reply = read_reply_line(s)
    s.close()
    assert reply.startswith(b":"), reply
    cpu = node.cpu_seconds() - cpu
    after = node.metric("gridkv_resp_parser_scanned_bytes_total")
    return cpu, (after - scanned if after is not None else None)


def set_big(node, size):
    s = socket.create_connection(node.resp)
    s.sendall(encode([b"SET", b"big", b"v" * size]))
    assert read_reply_line(s) == b"+OK\r\n"
    s.close()


def idle_mget_rss(binary, clients, repeat, commands, seconds):
    """Peak RSS of a fresh node while `clients` never read MGET replies."""
    node = NodeProc(binary, [])
    try:
        set_big(node, 1 << 20)
        base = node.rss_bytes()
        command = encode([b"MGET"] + [b"big"] * repeat)
        socks = []
        for _ in range(clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(node.resp)
            s.setblocking(False)
            socks.append(s)
        peak = base
        deadline = time.time() + seconds
        pending = {id(s): command * commands for s in socks}
        while time.time() < deadline:
            for s in socks:
                rest = pending[id(s)]
                if rest:
                    try:
                        pending[id(s)] = rest[s.send(rest):]
                    except (BlockingIOError, ConnectionError):
                        pass
            peak = max(peak, node.rss_bytes())
            time.sleep(0.05)
        held = node.metric("gridkv_resp_clients_output_bytes")
        for s in socks:
            s.close()
        return base, peak, held
    finally:
        node.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", required=True, help="the gridkv binary")
    p.add_argument("--trickle-mb", type=float, default=7.0,
                   help="size of the EXISTS command (MB)")
    p.add_argument("--piece", type=int, default=1024,
                   help="bytes per trickled piece")
    p.add_argument("--pause", type=float, default=0.001,
                   help="seconds between trickled pieces")
    p.add_argument("--repeat", type=int, default=100,
                   help="times each MGET names the 1 MB key")
    p.add_argument("--commands", type=int, default=50,
                   help="MGETs each idle client sends")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="how long idle clients are watched")
    a = p.parse_args()

    rows = []
    node = NodeProc(a.binary, [])
    try:
        keys = int(a.trickle_mb * 1e6 / 19)
        command = encode([b"EXISTS"] + [b"key:%08d" % i for i in range(keys)])
        once_cpu, once_scan = command_cost(node, command, None, 0)
        trickle_cpu, trickle_scan = command_cost(node, command, a.piece, a.pause)
    finally:
        node.stop()
    mb = len(command) / 1e6
    rows.append((f"EXISTS {mb:.1f} MB at once: node CPU s", f"{once_cpu:.2f}"))
    rows.append((f"same in {a.piece} B pieces: node CPU s", f"{trickle_cpu:.2f}"))
    rows.append(("trickled / at once (CPU)",
                 f"{trickle_cpu / max(once_cpu, 1 / TICKS):.1f}x"))
    if once_scan is not None:
        rows.append(("parser scanned bytes, at once / trickled",
                     f"{once_scan} / {trickle_scan} "
                     f"({trickle_scan / max(once_scan, 1):.2f}x)"))
    for clients in (5, 20):
        base, peak, held = idle_mget_rss(a.binary, clients, a.repeat,
                                         a.commands, a.seconds)
        rows.append((f"RSS, {clients} clients MGET big x{a.repeat}, not reading",
                     f"{base / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} MiB"
                     + (f" (replies held {held / 2**20:.1f} MiB)"
                        if held is not None else "")))
    width = max(len(r[0]) for r in rows)
    print(f"binary: {a.binary}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
