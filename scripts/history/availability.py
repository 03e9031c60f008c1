#!/usr/bin/env python3
"""Availability under partial failures, over real `gridkv node` processes
(GridKV issue 15), with the history check of issue 14.

    sudo python3 scripts/history/availability.py [--seed S] [--shapes isolate,split,bridge,oneway,restart]

For each scenario, a fresh cluster of --nodes nodes (each in its own
network namespace, as run.py sets them up) runs a seeded delete-heavy
workload from clients pinned to every node (--clients-per-node each),
through three phases: `baseline` (no fault), `fault`, `healed`. The
faults:

- `isolate`: one node cut from all others, both ways;
- `split`: 2 of 5 nodes cut from the other 3;
- `bridge`: one node reaches every other; the other four form two halves
  that cannot reach each other;
- `oneway`: packets from one node to another are dropped, the other way
  passes;
- `restart`: one node killed (-9) at the start of the fault phase and
  started again --down seconds later, its clients writing through it
  all along.

Each scenario prints, per phase, acknowledged operations per second (and
as a fraction of the baseline), the error rate by error code, and p50/p99
latency of acknowledged operations; per node in the fault phase the same
against that node's baseline; for `restart`, the time until writes
through the restarted node succeed again and the errors seen before, by
message. Then the cluster is healed, every key read through every node
until they agree (--settle), and the whole history checked (checker.py:
no deleted value back, no stale value; no disagreement after healing).

Exit status: 0 clean; 1 a violation, a disagreement or a failed final
read; 2 a setup error; 3 (only with --min-availability F) a scenario
whose fault phase acknowledged fewer than F times the baseline's
operations per second; 130 interrupted. Availability is reported, not
asserted, unless --min-availability is given. docs/HISTORY.md has the
details, docs/BENCHMARKS.md the measured tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import DEL, GET, SET, VIOLATION_KINDS, check, disagreements  # noqa: E402
from phases import (  # noqa: E402
    Phase,
    fmt_frac,
    fmt_ms,
    per_node,
    ratio,
    recovery,
    summarize,
    table,
    timeline,
)
from run import ROOT, Cluster, Net, Recorder, SetupError, final_reads, run_op  # noqa: E402
from shapes import SHAPES, ShapeError, plan  # noqa: E402

SCENARIOS = SHAPES + ("restart",)


def log(msg: str) -> None:
    print(f"availability: {msg}", flush=True)


def pinned_client(cid: int, node: int, cl: Cluster, rec: Recorder, stop: threading.Event, args, tag: str) -> None:
    """One client thread, always through `node` (reconnecting to it after
    a connection error, 50 ms later), so each node's share of the load
    stays fixed whatever happens to the others. With `--rate`, it sends
    at most that many operations per second, on a fixed schedule: a slow
    operation delays the next one and the missed slots are dropped, not
    sent in a burst, so a phase's throughput is the offered load minus
    what the fault cost (unpaced, the clients of healthy nodes would take
    over the CPU the stalled ones leave)."""
    rng = random.Random(f"{args.seed}:{tag}:c{cid}")
    name = f"c{cid}"
    pad = "." * args.value_size
    n = 0
    conn = cl.client(node)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    # Clients start spread over one interval, not in lockstep.
    next_at = time.monotonic() + rng.uniform(0, interval)
    while not stop.is_set():
        if interval:
            now = time.monotonic()
            if next_at > now and stop.wait(next_at - now):
                break
            next_at = max(next_at + interval, time.monotonic())
        kind = rng.choices((SET, DEL, GET), args.mix)[0]
        key = f"k{rng.randrange(args.keys)}"
        n += 1
        value = f"{name}-{n}" + pad if kind == SET else None
        if not run_op(rec, conn, name, node, kind, key, value, messages=True):
            conn.close()
            stop.wait(0.05)
            conn = cl.client(node)
    conn.close()


class Scenario:
    """One fault scenario on a fresh cluster: start, load, fault, heal,
    check. `run()` returns its result as a JSON-able dict."""

    def __init__(self, name: str, args, net: Net, workdir: str):
        self.name, self.args, self.net = name, args, net
        self.workdir = os.path.join(workdir, name)
        os.makedirs(self.workdir, exist_ok=True)
        self.rng = random.Random(f"{args.seed}:{name}")
        self.cl: Optional[Cluster] = None
        self.t0 = 0.0
        self.ops: list = []

    def run(self) -> dict:
        args = self.args
        shape = plan(self.name, args.nodes, self.rng) if self.name in SHAPES else None
        victim = self.rng.randrange(args.nodes) if shape is None else None
        detail = shape.detail if shape else f"n{victim} killed, restarted {args.down:g}s later"
        roles = shape.roles if shape else {i: ("restarted" if i == victim else "-") for i in range(args.nodes)}
        log(f"[{self.name}] {detail}")

        self.cl = cl = Cluster(args, self.workdir, self.net)
        t = time.monotonic()
        cl.start()
        log(f"[{self.name}] {args.nodes} nodes healthy in {time.monotonic() - t:.1f}s (logs in {self.workdir})")

        rec = Recorder(time.monotonic())
        self.t0 = rec.t0
        stop = threading.Event()
        threads = [
            threading.Thread(target=pinned_client, args=(c, c % args.nodes, cl, rec, stop, args, self.name), daemon=True)
            for c in range(args.nodes * args.clients_per_node)
        ]
        for th in threads:
            th.start()
        marks: Dict[str, float] = {"start": rec.t0}
        restart: Dict[str, float] = {}
        try:
            time.sleep(args.baseline)
            marks["fault"] = time.monotonic()
            if shape:
                self.net.cut(shape.cuts)
            else:
                node = cl.nodes[victim]
                node.kill()
                restart["killed"] = time.monotonic()
                time.sleep(args.down)
                restart["spawned"] = time.monotonic()
                node.start(cl.seeds_for(victim), timeout=args.ready_timeout)
                restart["ready"] = time.monotonic()
            time.sleep(max(0.0, marks["fault"] + args.fault - time.monotonic()))
            marks["healed"] = time.monotonic()
            if shape:
                self.net.heal()
            time.sleep(args.healed)
            marks["end"] = time.monotonic()
        finally:
            stop.set()
            for th in threads:
                th.join()
        workload_ops = len(rec.ops)

        notes: List[str] = []
        if rec.full:
            notes.append("the history reached its bound: later operations were neither counted nor checked")
        self.net.heal()
        for n in cl.nodes:
            if not n.alive():
                n.start(cl.seeds_for(n.i), timeout=args.ready_timeout)
        try:
            cl.wait_healthy(args.ready_timeout)
        except SetupError as e:  # still check the history, and read what answers
            notes.append(f"after healing: {e}")
            log(f"[{self.name}] {notes[-1]}")
        evicted = sum(n.evictions() for n in cl.nodes)
        t = time.monotonic()
        reads, read_errors, rounds = final_reads(cl, rec, args.keys, t + args.settle, evicted > 0)
        log(f"[{self.name}] final reads: {rounds} round(s) over {time.monotonic() - t:.1f}s; evictions: {evicted}")
        cl.stop()

        self.ops = ops = rec.ops[:workload_ops]
        phases = [
            Phase("baseline", marks["start"], marks["fault"]),
            Phase("fault", marks["fault"], marks["healed"]),
            Phase("healed", marks["healed"], marks["end"]),
        ]
        stats = summarize(ops, phases)
        nodes_base = per_node(ops, phases[0], args.nodes)
        nodes_fault = per_node(ops, phases[1], args.nodes)
        violations = check(rec.ops)
        disagree = disagreements(reads, evicted > 0)
        if args.history_dir:
            path = os.path.join(args.history_dir, f"{self.name}.jsonl")
            with open(path, "w") as f:
                for o in rec.ops:
                    f.write(json.dumps(o.__dict__) + "\n")
            notes.append(f"history written to {path}")
        result = {
            "scenario": self.name,
            "detail": detail,
            "phases": [dict(s.__dict__, errors=dict(s.errors), ok_per_s=s.ok_per_s) for s in stats],
            "fault_vs_baseline": ratio(stats[1].ok_per_s, stats[0].ok_per_s),
            "healed_vs_baseline": ratio(stats[2].ok_per_s, stats[0].ok_per_s),
            "nodes": {
                i: {
                    "role": roles.get(i, "-"),
                    "baseline_ok_per_s": nodes_base[i].ok_per_s,
                    "fault_ok_per_s": nodes_fault[i].ok_per_s,
                    "fault_errors": dict(nodes_fault[i].errors),
                    "fault_ops": nodes_fault[i].ops,
                    "fault_p50_ms": nodes_fault[i].p50_ms,
                    "fault_p99_ms": nodes_fault[i].p99_ms,
                }
                for i in range(args.nodes)
            },
            "ops": len(rec.ops),
            "violations": dict(Counter(v.kind for v in violations)),
            "disagreements": len(disagree),
            "final_read_errors": len(read_errors),
            "notes": notes,
        }
        if restart:
            r = recovery(ops, victim, restart["killed"], restart["spawned"], marks["end"])
            result["restart"] = {
                "node": victim,
                "down_s": restart["spawned"] - restart["killed"],
                "ready_line_s": restart["ready"] - restart["spawned"],
                "first_ok_write_s": r.first_ok,
                "first_ok_write_invoked_s": r.first_ok_invoked,
                "all_writes_ok_after_s": r.all_ok_after,
                "writes_after_restart": r.writes,
                "errors_after_restart": dict(r.errors.most_common()),
                "errors_while_down": dict(r.errors_down.most_common()),
            }
        self.report(result, stats, nodes_base, nodes_fault, violations, disagree, read_errors)
        return result

    def report(self, result, stats, nodes_base, nodes_fault, violations, disagree, read_errors) -> None:
        args = self.args
        print()
        print(f"== {self.name}: {result['detail']} (seed {args.seed})")
        print()
        print("\n".join(table(stats, stats[0])))
        print()
        print("per node, fault phase against the same node's baseline:")
        print()
        print("| node | role | baseline ok/s | fault ok/s | of baseline | errors | p50 ms | p99 ms |")
        print("|---|---|---:|---:|---:|---|---:|---:|")
        for i in range(args.nodes):
            b, f = nodes_base[i], nodes_fault[i]
            print(
                f"| n{i} | {result['nodes'][i]['role']} | {b.ok_per_s:,.0f} | {f.ok_per_s:,.0f} | "
                f"{fmt_frac(ratio(f.ok_per_s, b.ok_per_s))} | {f.errors_text()} | {fmt_ms(f.p50_ms)} | {fmt_ms(f.p99_ms)} |"
            )
        if args.timeline:
            print()
            print(f"per second from the start (fault at {stats[0].seconds:.1f}s, healed at "
                  f"{stats[0].seconds + stats[1].seconds:.1f}s):")
            print()
            print("\n".join(timeline(self.ops, self.t0, self.t0 + sum(s.seconds for s in stats), args.nodes)))
        if "restart" in result:
            r = result["restart"]
            print()
            first = "never"
            if r["first_ok_write_s"] is not None:
                first = f"{r['first_ok_write_s']:.2f}s (sent at {r['first_ok_write_invoked_s']:.2f}s)"
            print(
                f"restart of n{r['node']}: down {r['down_s']:.2f}s; from the restart: ready line at "
                f"{r['ready_line_s']:.2f}s, last failed write through it answered at "
                f"{r['all_writes_ok_after_s']:.2f}s, first acknowledged one at {first}; "
                f"{r['writes_after_restart']} writes through it after the restart"
            )
            for title, errs in (("while down", r["errors_while_down"]), ("after the restart", r["errors_after_restart"])):
                print(f"  failed writes through n{r['node']} {title}: {sum(errs.values())}")
                for msg, n in list(errs.items())[:8]:
                    print(f"    {n:6}  {msg}")
        vc = Counter(v.kind for v in violations)
        verdict = "clean" if not (violations or disagree or read_errors) else "VIOLATIONS"
        print()
        print(
            f"history: {result['ops']:,} ops; "
            + ", ".join(f"{k} {vc.get(k, 0)}" for k in VIOLATION_KINDS)
            + f"; disagreements after healing {len(disagree)}; final reads failed {len(read_errors)}: {verdict}"
        )
        for v in violations[: args.max_report]:
            print(v.render(self.t0))
        for n in result["notes"]:
            print(f"note: {n}")

    def stop(self) -> None:
        if self.cl:
            for n in self.cl.nodes:
                n.signal(signal.SIGCONT)
            self.cl.stop()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    p.add_argument("--seed", type=int, default=None, help="random if not given; always printed")
    p.add_argument("--baseline", type=float, default=10.0, help="seconds of the fault-free phase")
    p.add_argument("--fault", type=float, default=15.0, help="seconds of the fault phase")
    p.add_argument("--healed", type=float, default=10.0, help="seconds after healing")
    p.add_argument("--down", type=float, default=2.0, help="restart: seconds the node stays dead")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--clients-per-node", type=int, default=2)
    p.add_argument(
        "--rate", type=float, default=150.0,
        help="operations per second per client, at most (0: as fast as each client can)",
    )  # fmt: skip
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--value-size", type=int, default=0, help="bytes of padding after each unique value")
    p.add_argument("--max-memory", default="64mb", help="each node's --max-memory")
    p.add_argument("--mix", default="30:35:35", help="weights of SET:DEL:GET")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gridkv"))
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("-w", "--write-quorum", type=int, default=2)
    p.add_argument("-r", "--read-quorum", type=int, default=2)
    p.add_argument("--settle", type=float, default=30.0, help="seconds to wait for agreement after healing")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument(
        "--min-availability", type=float, default=None, metavar="F",
        help="exit 3 if a fault phase acknowledged fewer than F x the baseline's ops/s (0 < F <= 1)",
    )  # fmt: skip
    p.add_argument("--timeline", action="store_true", help="also print each node's ok/failed ops per second")
    p.add_argument("--json-out", default=None, help="write every scenario's figures here (JSON)")
    p.add_argument("--history-dir", default=None, help="write each scenario's history here (JSON lines)")
    p.add_argument("--max-report", type=int, default=5, help="violations printed in full per scenario")
    a = p.parse_args(argv)
    a.shapes = [s for s in a.shapes.split(",") if s]
    for s in a.shapes:
        if s not in SCENARIOS:
            p.error(f"--shapes: unknown scenario {s!r} (of {', '.join(SCENARIOS)})")
    if not a.shapes:
        p.error("--shapes: at least one scenario")
    try:
        a.mix = [int(w) for w in a.mix.split(":")]
    except ValueError:
        a.mix = []
    if len(a.mix) != 3 or min(a.mix) < 0 or sum(a.mix) == 0:
        p.error("--mix: three non-negative integer weights SET:DEL:GET, e.g. 30:35:35")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    if not (3 <= a.nodes <= 50 and 1 <= a.clients_per_node <= 32 and 1 <= a.keys <= 1_000_000):
        p.error("--nodes 3..50, --clients-per-node 1..32, --keys 1..1000000")
    if not 0 <= a.value_size <= 4_000_000:
        p.error("--value-size 0..4000000")
    if min(a.baseline, a.fault, a.healed) <= 0 or not 0 <= a.down < a.fault:
        p.error("--baseline, --fault and --healed must be positive, and 0 <= --down < --fault")
    if not 0 <= a.rate <= 100_000:
        p.error("--rate 0..100000")
    if a.min_availability is not None and not 0 < a.min_availability <= 1:
        p.error("--min-availability: a fraction in (0, 1]")
    return a


def repro_command(argv, seed: int) -> str:
    argv = list(argv)
    if "--seed" in argv:
        argv[argv.index("--seed") + 1] = str(seed)
    elif not any(x.startswith("--seed=") for x in argv):
        argv += ["--seed", str(seed)]
    return " ".join(shlex.quote(x) for x in ["python3", "scripts/history/availability.py"] + argv)


def summary(results: List[dict], args) -> List[str]:
    """One line per scenario: the figures that compare them."""
    out = [
        "| scenario | baseline ok/s | fault ok/s | fault/baseline | fault errors | healed/baseline | history |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        base, fault = r["phases"][0], r["phases"][1]
        errs = fault["ops"] - fault["ok"]
        rate = f"{100 * errs / fault['ops']:.1f}%" if fault["ops"] else "-"
        bad = sum(r["violations"].values()) + r["disagreements"] + r["final_read_errors"]
        out.append(
            f"| {r['scenario']} | {base['ok_per_s']:,.0f} | {fault['ok_per_s']:,.0f} | "
            f"{fmt_frac(r['fault_vs_baseline'])} | {rate} | {fmt_frac(r['healed_vs_baseline'])} | "
            f"{'clean' if not bad else 'VIOLATIONS'} |"
        )
    return out


def main(argv) -> int:
    args = parse_args(argv)
    if not os.access(args.binary, os.X_OK):
        log(f"{args.binary} is not an executable (cargo build --release -p gridkv-server)")
        return 2
    log(f"seed {args.seed}; reproduce: {repro_command(argv, args.seed)}")
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    if args.history_dir:
        os.makedirs(args.history_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="gridkv-availability.")
    net: Optional[Net] = None
    scenario: Optional[Scenario] = None
    results: List[dict] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    rc = 0
    try:
        net = Net(args.nodes)
        try:
            net.setup()
        except SetupError as e:
            raise SetupError(f"network namespaces unavailable (needs root): {e}")
        for name in args.shapes:
            scenario = Scenario(name, args, net, workdir)
            results.append(scenario.run())
            scenario = None
    except (SetupError, ShapeError) as e:
        log(f"SETUP ERROR: {e}")
        rc = 2
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if scenario:
            scenario.stop()
        if net:
            net.heal()
            net.cleanup()
    print()
    print(f"== summary (seed {args.seed}; load average {os.getloadavg()[0]:.2f})")
    print()
    print("\n".join(summary(results, args)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"seed": args.seed, "argv": argv, "scenarios": results}, f, indent=1)
        print(f"figures written to {args.json_out}")
    print(f"reproduce: {repro_command(argv, args.seed)}")
    if rc:
        print("RESULT: SETUP ERROR" if rc == 2 else "RESULT: INTERRUPTED")
        return rc
    if any(sum(r["violations"].values()) + r["disagreements"] + r["final_read_errors"] for r in results):
        print("RESULT: VIOLATIONS")
        return 1
    if args.min_availability is not None:
        low = [r for r in results if (r["fault_vs_baseline"] or 0.0) < args.min_availability]
        if low:
            print(
                f"RESULT: BELOW --min-availability {args.min_availability:g}: "
                + ", ".join(f"{r['scenario']} {fmt_frac(r['fault_vs_baseline'])}" for r in low)
            )
            return 3
    print("RESULT: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
