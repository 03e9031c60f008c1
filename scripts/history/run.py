#!/usr/bin/env python3
"""History checker over real `gridkv node` processes (GridKV issue 14,
"forgetting never resurrects").

    sudo python3 scripts/history/run.py [--seed S] [--duration 60] [--faults kill,pause,partition]

Starts --nodes nodes, runs --clients concurrent clients (one thread and one
connection each, to a random node) with a seeded, delete-heavy workload on
--keys keys while a seeded nemesis kills (-9) and restarts nodes, pauses
them (SIGSTOP/SIGCONT) and partitions them; then heals, waits for the
cluster to converge, reads every key through every node, and checks the
history (checker.py). Exit status: 0 clean, 1 violations or disagreements,
2 a setup error. docs/HISTORY.md has the details and the findings.

Each node runs in its own network namespace (created here, needs root),
all joined by a bridge in a hub namespace, and the checker reaches them
through a veth from its own namespace; partitions are iptables DROP rules
inside the nodes' namespaces. Nothing in the caller's namespace but that one
veth is touched, and everything is removed on exit (also on Ctrl-C). With
--no-netns (or when namespaces cannot be created) nodes run on 127.0.0.1
and partitions are not available.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from typing import Dict, List, Optional

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import (  # noqa: E402
    DEL,
    EXPIRE,
    FAIL,
    GET,
    OK,
    PERSIST,
    SET,
    TIMEOUT,
    VIOLATION_KINDS,
    Op,
    check,
    disagreements,
    short,
)
from shapes import both_ways, cut_rules  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_PORT, RESP_PORT, HTTP_PORT = 7000, 6379, 8080
# The nodes' HTTP admin token (in namespaces their admin is not on
# loopback, so /cluster and /metrics need it); the namespaces are the run's
# own, so a fixed value does.
ADMIN_TOKEN = "history-run"
#: Bound on the recorded history (each op is a few hundred bytes).
MAX_OPS = 2_000_000


def log(msg: str) -> None:
    print(f"history: {msg}", flush=True)


class SetupError(Exception):
    """The cluster could not be set up or healed (not a finding)."""


def sh(*args: str, check_rc: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise SetupError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


class Net:
    """Network namespaces: one per node, a hub with a bridge, a veth to us."""

    def __init__(self, nodes: int):
        tag = os.getpid() % 100000
        self.hub = f"gkvh{tag}"
        self.host_if = f"gkvh{tag}"
        self.ns = [f"gkv{tag}n{i}" for i in range(nodes)]
        self.subnet = f"10.231.{tag % 250}"
        self.created: List[str] = []
        self.veth = False

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def setup(self) -> None:
        routes = sh("ip", "route").stdout
        if f"{self.subnet}." in routes:
            raise SetupError(f"{self.subnet}.0/24 is already routed here")
        sh("ip", "netns", "add", self.hub)
        self.created.append(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "up0", "netns", self.hub)
        self.veth = True
        sh("ip", "-n", self.hub, "link", "set", "up0", "master", "br0")
        sh("ip", "-n", self.hub, "link", "set", "up0", "up")
        sh("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        for i, ns in enumerate(self.ns):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", self.hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", self.hub, "link", "set", f"p{i}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def partition(self, side_a: List[int], side_b: List[int]) -> None:
        """Drop every packet between the two sides (both directions)."""
        self.cut(both_ways(side_a, side_b))

    def cut(self, cuts) -> None:
        """Drop the packets of each directed cut `(x, y)`: from x to y
        (shapes.py); `heal` removes them."""
        for n, rules in cut_rules(cuts, len(self.ns), self.ip).items():
            for rule in rules:
                sh("ip", "netns", "exec", self.ns[n], "iptables", *rule)

    def heal(self) -> None:
        for ns in self.ns:
            if ns in self.created:
                sh("ip", "netns", "exec", ns, "iptables", "-F", check_rc=False)

    def cleanup(self) -> None:
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check_rc=False)
        self.created = []
        if self.veth:
            sh("ip", "link", "del", self.host_if, check_rc=False)
            self.veth = False


class Node:
    """One `gridkv node` process (restartable with the same id and addresses)."""

    def __init__(self, i: int, args, workdir: str, net: Optional[Net], cluster: str):
        self.i = i
        self.args = args
        self.workdir = workdir
        self.net = net
        self.cluster = cluster
        self.id = f"h{i}"
        self.proc: Optional[subprocess.Popen] = None
        self.host = net.ip(i) if net else "127.0.0.1"
        self.cluster_addr = f"{self.host}:{CLUSTER_PORT}" if net else f"{self.host}:0"
        self.resp_port = RESP_PORT if net else 0
        self.http_addr = f"{self.host}:{HTTP_PORT}" if net else f"{self.host}:0"
        self.starts = 0
        self.paused = False

    def tls_args(self) -> List[str]:
        """`--tls-*` for this node, its certificate made (with the CA) the
        first time, by `gridkv cert cluster`, under the workdir."""
        pki = os.path.join(self.workdir, "pki")
        if not os.path.exists(os.path.join(pki, self.id, "node.key")):
            made = subprocess.run(
                [self.args.binary, "cert", "cluster", "--out", pki, "--id", self.id, "--host", self.host],
                capture_output=True, text=True,
            )  # fmt: skip
            if made.returncode != 0:
                raise SetupError(f"gridkv cert cluster failed: {made.stderr.strip()}")
        return [
            "--tls-ca", os.path.join(pki, "ca", "ca.pem"),
            "--tls-cert", os.path.join(pki, self.id, "node.pem"),
            "--tls-key", os.path.join(pki, self.id, "node.key"),
        ]  # fmt: skip

    def start(self, seeds: List[str], timeout: float = 60.0) -> None:
        self.starts += 1
        out = os.path.join(self.workdir, f"node{self.i}.{self.starts}.out")
        err = os.path.join(self.workdir, f"node{self.i}.{self.starts}.err")
        cmd = [
            self.args.binary, "node", "--id", self.id, "--cluster", self.cluster,
            "--listen", self.cluster_addr, "--resp", f"{self.host}:{self.resp_port}",
            "--http", self.http_addr, "--max-memory", self.args.max_memory,
            "--replicas", str(self.args.replicas), "--write-quorum", str(self.args.write_quorum),
            "--read-quorum", str(self.args.read_quorum),
        ]  # fmt: skip
        if seeds:
            cmd += ["--seeds", ",".join(seeds)]
        if self.net:
            # Off loopback a node needs TLS (or --insecure): run the faults
            # over mutual TLS, as a real deployment would.
            cmd += self.tls_args() + ["--admin-token", ADMIN_TOKEN]
        if self.net:
            cmd = ["ip", "netns", "exec", self.net.ns[self.i]] + cmd  # execs: same pid
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDKV_") or k == "GRIDKV_LOG"}
        env["NO_COLOR"] = "1"
        with open(out, "w") as fo, open(err, "w") as fe:
            self.proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env)
        self.paused = False
        deadline = time.monotonic() + timeout
        while True:
            with open(out) as f:
                m = re.search(r"^gridkv ready: .*cluster=(\S+) resp=(\S+) http=(\S+)", f.read(), re.M)
            if m:
                break
            if self.proc.poll() is not None:
                raise SetupError(f"node {self.i} exited ({self.proc.returncode}) before ready: {tail(err)}")
            if time.monotonic() > deadline:
                raise SetupError(f"node {self.i}: no ready line in {timeout}s: {tail(err)}")
            time.sleep(0.05)
        # Loopback mode: keep the ports the first start got, for restarts.
        self.cluster_addr = m.group(1)
        self.resp_port = int(m.group(2).rsplit(":", 1)[1])
        self.http_addr = m.group(3)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None:
            if self.alive():
                self.proc.kill()
            self.proc.wait()

    def admin(self, path: str) -> urllib.request.Request:
        """A request to the HTTP admin, with the admin token (off loopback
        /cluster and /metrics need it)."""
        return urllib.request.Request(
            f"http://{self.http_addr}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def evictions(self) -> int:
        """Values this node evicted for memory (0 if it cannot say)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.admin("/metrics"), timeout=3) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("gridkv_evictions_total "):
                        return int(float(line.split()[1]))
        except Exception:
            pass
        return 0

    def cluster_view(self) -> Optional[dict]:
        """The node's `/cluster` JSON, or None."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.admin("/cluster"), timeout=3) as r:
                return json.loads(r.read()) if r.status == 200 else None
        except Exception:
            return None

    def health(self) -> Optional[dict]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{self.http_addr}/health", timeout=3) as r:
                return json.loads(r.read()) if r.status == 200 else None
        except Exception:
            return None


def tail(path: str, n: int = 5) -> str:
    try:
        with open(path) as f:
            return " | ".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return ""


def find_int(obj, name: str) -> Optional[int]:
    """The first integer field `name` anywhere in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == name and isinstance(v, int):
                return v
            r = find_int(v, name)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_int(v, name)
            if r is not None:
                return r
    return None


class Cluster:
    def __init__(self, args, workdir: str, net: Optional[Net]):
        self.args = args
        self.net = net
        name = f"hist-{os.getpid()}"
        self.nodes = [Node(i, args, workdir, net, name) for i in range(args.nodes)]

    def seeds_for(self, i: int) -> List[str]:
        return [n.cluster_addr for n in self.nodes if n.i != i]

    def start(self) -> None:
        self.nodes[0].start([])
        for n in self.nodes[1:]:
            n.start([self.nodes[0].cluster_addr])
        self.wait_healthy(self.args.ready_timeout)
        self.wait_formed(self.args.ready_timeout)

    def wait_formed(self, timeout: float) -> None:
        """Until every node sees every node as a normal ring member: the
        faults strike a formed cluster. (Reads and writes while several
        nodes join at once, with ring views more than one step apart, are
        a known gap of issue 14, tested apart.)"""
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            while True:
                c = n.cluster_view() or {}
                normal = [m for m in c.get("members", []) if m.get("ring_state") == "normal"]
                if len(normal) == len(self.nodes):
                    break
                if time.monotonic() > deadline:
                    raise SetupError(f"node {n.i}: {len(normal)} normal ring members after {timeout}s")
                time.sleep(0.2)

    def wait_healthy(self, timeout: float) -> None:
        want = min(self.args.replicas, len(self.nodes))
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            while True:
                h = n.health()
                if h is not None and find_int(h, "effective_replicas") == want:
                    break
                if not n.alive():
                    raise SetupError(f"node {n.i} is not running")
                if time.monotonic() > deadline:
                    raise SetupError(f"node {n.i}: no /health 200 with {want} replicas in {timeout}s ({h})")
                time.sleep(0.2)

    def client(self, i: int, timeout: float = 5.0) -> redis.Redis:
        n = self.nodes[i]
        return redis.Redis(
            host=n.host, port=n.resp_port, socket_timeout=timeout, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0), decode_responses=True,
        )  # fmt: skip

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()


class Recorder:
    """The history: every operation, with a bound."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.ops: List[Op] = []
        self.lock = threading.Lock()
        self.full = False

    def add(self, **kw) -> None:
        with self.lock:
            if len(self.ops) >= MAX_OPS:
                self.full = True
                return
            self.ops.append(Op(id=len(self.ops), **kw))


def error_message(e: Exception) -> str:
    """An error reply as the server sent it: redis-py strips the code of
    the replies it knows (`ERR`, `TRYAGAIN`, ...) and keeps it apart."""
    code = getattr(e, "status_code", None)
    return f"{code} {e}" if code else str(e)


def run_op(
    rec: Recorder, conn: redis.Redis, name: str, node: int, kind: str, key: str, value=None, messages: bool = False
) -> bool:
    """Runs one operation and records it; False if the connection is gone.
    The error recorded is the reply's code (`NOQUORUM`) or the exception's
    type, or with `messages` the whole reply (`Type: message` when no
    reply came), cut at 200 characters."""
    inv = time.monotonic()
    outcome, result, error, conn_ok = OK, None, "", True
    try:
        if kind == SET:
            conn.set(key, value)
            result = value
        elif kind == GET:
            result = conn.get(key)
        elif kind == DEL:
            result = conn.delete(key)
        elif kind == EXPIRE:
            result = conn.expire(key, 3600)
        elif kind == PERSIST:
            result = conn.persist(key)
        result = int(result) if kind in (DEL, EXPIRE, PERSIST) else result
    except redis.exceptions.ResponseError as e:
        msg = error_message(e)
        outcome, error = FAIL, msg[:200] if messages else msg.split(" ")[0]
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        error = f"{type(e).__name__}: {e}"[:200] if messages else type(e).__name__
        outcome, conn_ok = TIMEOUT, False
    cmp = time.monotonic()
    if kind == SET:
        result = value
    rec.add(client=name, node=node, kind=kind, key=key, invoke=inv, complete=cmp, outcome=outcome, value=result, error=error)
    return conn_ok


def client_loop(cid: int, cl: Cluster, rec: Recorder, stop: threading.Event, args) -> None:
    rng = random.Random(args.seed * 1000 + cid)
    kinds = [SET, DEL, GET] + ([EXPIRE, PERSIST] if args.expire else [])
    weights = list(args.mix) + ([5, 5] if args.expire else [])
    name = f"c{cid}"
    pad = "." * args.value_size
    n = 0
    node = rng.randrange(len(cl.nodes))
    conn = cl.client(node)
    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        key = f"k{rng.randrange(args.keys)}"
        n += 1
        value = f"{name}-{n}" + pad if kind == SET else None
        if not run_op(rec, conn, name, node, kind, key, value):
            conn.close()
            node = rng.randrange(len(cl.nodes))
            conn = cl.client(node)
            stop.wait(0.05)
    conn.close()


class Nemesis:
    def __init__(self, cl: Cluster, net: Optional[Net], args, t0: float):
        self.cl, self.net, self.args, self.t0 = cl, net, args, t0
        self.rng = random.Random(args.seed)
        self.faults: List[tuple] = []  # (kind, detail, start, end)
        self.errors: List[str] = []
        self.kinds = args.fault_kinds

    def run(self, stop: threading.Event) -> None:
        # Kinds are drawn in seeded rounds, each a shuffle of every kind:
        # a run with k kinds has injected each of them after k faults.
        order: List[str] = []
        try:
            while not stop.wait(self.rng.uniform(1.0, 4.0)):
                if not order:
                    order = list(self.kinds)
                    self.rng.shuffle(order)
                kind = order.pop()
                hold = self.rng.uniform(self.args.fault_min, self.args.fault_max)
                start = time.monotonic()
                detail, heal = self.inject(kind)
                stop.wait(hold)
                heal()
                self.faults.append((kind, detail, start - self.t0, time.monotonic() - self.t0))
        except Exception as e:  # reported; the run goes on without faults
            self.errors.append(f"{type(e).__name__}: {e}")

    def inject(self, kind: str):
        nodes = self.cl.nodes
        if kind == "kill":
            n = self.rng.choice(nodes)
            n.kill()

            def heal():
                n.start(self.cl.seeds_for(n.i))

            return f"n{n.i}", heal
        if kind == "pause":
            n = self.rng.choice(nodes)
            n.signal(signal.SIGSTOP)
            n.paused = True

            def heal():
                n.signal(signal.SIGCONT)
                n.paused = False

            return f"n{n.i}", heal
        if kind == "partition":
            idx = list(range(len(nodes)))
            self.rng.shuffle(idx)
            k = self.rng.randint(1, max(1, (len(nodes) - 1) // 2))
            a, b = sorted(idx[:k]), sorted(idx[k:])
            self.net.partition(a, b)
            return f"{a}|{b}", self.net.heal
        raise ValueError(kind)


def final_reads(cl: Cluster, rec: Recorder, keys: int, rounds_deadline: float, misses_allowed: bool):
    """Reads every key through every node (recorded), until all agree or the
    deadline; returns (reads, errors, rounds) of the last round."""
    rounds = 0
    while True:
        rounds += 1
        reads: Dict[str, Dict[int, object]] = {}
        errors: Dict[str, Dict[int, str]] = {}
        for n in cl.nodes:
            conn = cl.client(n.i, timeout=10)
            for k in range(keys):
                key = f"k{k}"
                before = len(rec.ops)
                if not run_op(rec, conn, "final", n.i, GET, key):
                    conn.close()
                    conn = cl.client(n.i, timeout=10)
                o = rec.ops[-1] if len(rec.ops) > before else None
                if o is not None and o.outcome == OK:
                    reads.setdefault(key, {})[n.i] = o.value
                else:
                    errors.setdefault(key, {})[n.i] = o.error if o else "history full"
            conn.close()
        # Rounds go on until every node reads the same.
        settled = not disagreements(reads, misses_allowed) and not errors
        if settled or time.monotonic() > rounds_deadline:
            return reads, errors, rounds
        time.sleep(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    p.add_argument("--keys", type=int, default=30)
    p.add_argument("--max-memory", default="64mb", help="each node's --max-memory")
    p.add_argument("--value-size", type=int, default=0, help="bytes of padding after each unique value")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--faults", default="kill,pause,partition", help="comma-separated: kill,pause,partition; or none")
    p.add_argument("--fault-min", type=float, default=2.0, help="shortest fault, seconds")
    p.add_argument("--fault-max", type=float, default=8.0, help="longest fault, seconds")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gridkv"))
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("-w", "--write-quorum", type=int, default=2)
    p.add_argument("-r", "--read-quorum", type=int, default=2)
    p.add_argument("--expire", action="store_true", help="also EXPIRE (3600 s) and PERSIST")
    p.add_argument("--settle", type=float, default=90.0, help="seconds to wait for agreement after healing")
    p.add_argument("--ready-timeout", type=float, default=90.0)
    p.add_argument("--no-netns", action="store_true", help="nodes on 127.0.0.1 (no partitions)")
    p.add_argument("--history-out", default=None, help="write the history as JSON lines here")
    p.add_argument("--max-report", type=int, default=20, help="violations printed in full per kind")
    p.add_argument("--mix", default="35:25:40", help="weights of SET:DEL:GET")
    p.add_argument(
        "--require-faults", action="store_true",
        help="fail (exit 2) unless every kind in --faults was injected: no fallback to loopback",
    )  # fmt: skip
    a = p.parse_args(argv)
    try:
        a.mix = [int(w) for w in a.mix.split(":")]
    except ValueError:
        a.mix = []
    if len(a.mix) != 3 or min(a.mix) < 0 or sum(a.mix) == 0:
        p.error("--mix: three non-negative integer weights SET:DEL:GET, e.g. 30:35:35")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    a.fault_kinds = [] if a.faults == "none" else [f for f in a.faults.split(",") if f]
    for f in a.fault_kinds:
        if f not in ("kill", "pause", "partition"):
            p.error(f"--faults: unknown fault {f!r} (kill, pause, partition or none)")
    if not 0 <= a.value_size <= 4_000_000:
        p.error("--value-size 0..4000000")
    if not (1 <= a.nodes <= 200 and 1 <= a.clients <= 256 and 1 <= a.keys <= 1_000_000):
        p.error("--nodes 1..200, --clients 1..256, --keys 1..1000000")
    if a.fault_min <= 0 or a.fault_max < a.fault_min:
        p.error("need 0 < --fault-min <= --fault-max")
    return a


def repro_command(argv, seed: int) -> str:
    argv = list(argv)
    if "--seed" in argv:
        argv[argv.index("--seed") + 1] = str(seed)
    elif not any(x.startswith("--seed=") for x in argv):
        argv += ["--seed", str(seed)]
    return " ".join(shlex.quote(x) for x in ["python3", "scripts/history/run.py"] + argv)


def main(argv) -> int:
    args = parse_args(argv)
    if not os.access(args.binary, os.X_OK):
        log(f"{args.binary} is not an executable (cargo build --release -p gridkv-server)")
        return 2
    log(f"seed {args.seed}; reproduce: {repro_command(argv, args.seed)}")
    workdir = tempfile.mkdtemp(prefix="gridkv-history.")
    net: Optional[Net] = None
    cl: Optional[Cluster] = None
    notes: List[str] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.no_netns:
            net = Net(args.nodes)
            try:
                net.setup()
            except SetupError as e:
                net.cleanup()
                net = None
                if args.require_faults and "partition" in args.fault_kinds:
                    raise SetupError(f"network namespaces unavailable, and partitions are required: {e}")
                notes.append(f"network namespaces unavailable ({e}); nodes on 127.0.0.1")
        if net is None and "partition" in args.fault_kinds:
            args.fault_kinds.remove("partition")
            notes.append("partitions disabled: they need the network namespaces")
        for n in notes:
            log(n)
        cl = Cluster(args, workdir, net)
        t_setup = time.monotonic()
        cl.start()
        log(f"{args.nodes} nodes healthy in {time.monotonic() - t_setup:.1f}s (logs in {workdir})")

        t0 = time.monotonic()
        rec = Recorder(t0)
        stop = threading.Event()
        threads = [threading.Thread(target=client_loop, args=(i, cl, rec, stop, args), daemon=True) for i in range(args.clients)]
        nem = Nemesis(cl, net, args, t0)
        nem_stop = threading.Event()
        nt = threading.Thread(target=nem.run, args=(nem_stop,), daemon=True) if args.fault_kinds else None
        for t in threads:
            t.start()
        if nt:
            nt.start()
        mix = ", ".join(f"{k} {w}" for k, w in zip((SET, DEL, GET), args.mix))
        log(
            f"workload: {args.clients} clients, {args.keys} keys, {mix}, {args.duration:.0f}s, "
            f"max-memory {args.max_memory}, faults: {','.join(args.fault_kinds) or 'none'}"
        )
        time.sleep(args.duration)
        nem_stop.set()
        if nt:
            nt.join()
        stop.set()
        for t in threads:
            t.join()
        workload_ops = len(rec.ops)

        # Heal: every node running and unpaused, no rules; then healthy.
        if net:
            net.heal()
        for n in cl.nodes:
            if n.paused:
                n.signal(signal.SIGCONT)
            if not n.alive():
                try:
                    n.start(cl.seeds_for(n.i))
                except SetupError as e:
                    notes.append(f"restart after the run: {e}")
        log("healed; waiting for every node to be healthy")
        try:
            cl.wait_healthy(args.ready_timeout)
        except SetupError as e:  # still check the history, and read what answers
            notes.append(f"after healing: {e}")
            log(notes[-1])
        # A node that evicted may miss a value others still hold: under
        # memory pressure only different values disagree.
        evicted = sum(n.evictions() for n in cl.nodes)
        misses_allowed = evicted > 0
        log(f"evictions: {evicted}; final misses {'allowed' if misses_allowed else 'not allowed'}")
        t_heal = time.monotonic()
        reads, read_errors, rounds = final_reads(
            cl, rec, args.keys, t_heal + args.settle, misses_allowed
        )
        log(f"final reads: {rounds} round(s) over {time.monotonic() - t_heal:.1f}s")

        violations = check(rec.ops)
        disagree = disagreements(reads, misses_allowed)
        return report(args, argv, rec, workload_ops, nem, violations, disagree, read_errors, notes)
    except SetupError as e:
        log(f"SETUP ERROR: {e}")
        log(f"reproduce: {repro_command(argv, args.seed)}")
        return 2
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        # A second Ctrl-C (or a signal sent to the whole group) must not cut
        # the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cl:
            for n in cl.nodes:
                n.signal(signal.SIGCONT)
            cl.stop()
        if net:
            net.cleanup()


def report(args, argv, rec, workload_ops, nem, violations, disagree, read_errors, notes) -> int:
    ops = rec.ops
    print()
    print("== operations (kind, outcome: count); workload then final reads")
    c = Counter((o.kind, o.outcome, o.client == "final") for o in ops)
    for (kind, outcome, final), n in sorted(c.items()):
        print(f"  {'final ' if final else ''}{kind:8} {outcome:8} {n}")
    miss = sum(1 for o in ops[:workload_ops] if o.kind == GET and o.outcome == OK and o.value is None)
    hit = sum(1 for o in ops[:workload_ops] if o.kind == GET and o.outcome == OK and o.value is not None)
    print(f"  workload GETs: {hit} values, {miss} misses; history {len(ops)} ops{' (FULL: bound reached)' if rec.full else ''}")
    print("== faults (kind: count)")
    fc = Counter(f[0] for f in nem.faults)
    print("  " + (", ".join(f"{k}: {n}" for k, n in sorted(fc.items())) or "none"))
    for kind, detail, s, e in nem.faults:
        print(f"    {kind:9} {detail:16} [{s:7.2f}, {e:7.2f}]")
    for e in nem.errors:
        print(f"  nemesis stopped early: {e}")
    missing = [k for k in args.fault_kinds if k not in fc]
    if missing:
        print(f"  never injected: {', '.join(missing)} (a longer --duration injects every kind)")
    print("== violations (kind: count)")
    vc = Counter(v.kind for v in violations)
    for k in VIOLATION_KINDS:
        print(f"  {k}: {vc.get(k, 0)}")
    shown = Counter()
    for v in violations:
        shown[v.kind] += 1
        if shown[v.kind] <= args.max_report:
            print(v.render(rec.t0))
    for k in VIOLATION_KINDS:
        if vc.get(k, 0) > args.max_report:
            print(f"  ... and {vc[k] - args.max_report} more {k}")
    print(f"== disagreements after healing: {len(disagree)} key(s)")
    for key, per in sorted(disagree.items()):
        print(f"  {key}: " + ", ".join(f"n{n}={short(v)}" for n, v in sorted(per.items())))
    if read_errors:
        print(f"== final reads that failed: {len(read_errors)} key(s)")
        for key, per in sorted(read_errors.items())[: args.max_report]:
            print(f"  {key}: " + ", ".join(f"n{n}: {e}" for n, e in sorted(per.items())))
    for n in notes:
        print(f"note: {n}")
    if args.history_out:
        with open(args.history_out, "w") as f:
            for o in ops:
                f.write(json.dumps(o.__dict__) + "\n")
        print(f"history written to {args.history_out}")
    bad = bool(violations or disagree)
    # Keys no node could read after healing: liveness, not safety.
    stuck = bool(read_errors)
    # Under --require-faults, a run that did not test what was asked fails.
    short_of_faults = args.require_faults and bool(missing or nem.errors)
    print(f"seed: {args.seed}")
    print(f"reproduce: {repro_command(argv, args.seed)}")
    if bad:
        print("RESULT: VIOLATIONS")
        return 1
    if short_of_faults:
        print("RESULT: FAULTS MISSING (--require-faults)")
        return 2
    if stuck:
        print("RESULT: UNAVAILABLE AFTER HEALING (final reads failed)")
        return 3
    print("RESULT: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
