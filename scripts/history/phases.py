"""What each phase of an availability run cost: throughput, errors by
kind, latency, per node; and how long a restarted node took to take
writes again.

Pure logic over recorded operations (`checker.Op`), no I/O:
`availability.py` records and prints, `test_phases.py` checks this on
hand-made histories. See docs/HISTORY.md.

An operation belongs to the phase in which it was invoked. Throughput is
acknowledged operations per second of the phase; the error rate is the
share of operations that failed, by the first word of the error reply
(`TIMEOUT`, `NOQUORUM`, `TRYAGAIN`, `BUSY`, ...), or `connection error` /
`client timeout` when no reply came. Latency percentiles are over
acknowledged operations (an error's latency says how fast the node gave
up, which the error counts show apart).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

from checker import DEL, FAIL, OK, SET, Op

#: The error class of an operation that got no reply.
CONNECTION_ERROR, CLIENT_TIMEOUT = "connection error", "client timeout"


@dataclass(frozen=True)
class Phase:
    """A named stretch of a run, in monotonic seconds: [start, end)."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


@dataclass
class Stats:
    """What the operations of one phase (or of one node in it) came to."""

    name: str
    seconds: float
    ops: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds

    @property
    def error_rate(self) -> float:
        return (self.ops - self.ok) / self.ops if self.ops else 0.0

    def errors_text(self) -> str:
        """`NOQUORUM 3.1%, TIMEOUT 0.2%`, most frequent first; `-` if none."""
        if not self.ops or not self.errors:
            return "-"
        return ", ".join(f"{k} {100 * n / self.ops:.1f}%" for k, n in self.errors.most_common())


def error_class(op: Op) -> str:
    """The error's kind: the reply's first word, or a client-side class
    when no reply came (`run.py` records `Type: message` then); `` for an
    acknowledged operation."""
    if op.outcome == OK:
        return ""
    if op.outcome == FAIL:
        return op.error.split(" ", 1)[0] or "ERR"
    return CLIENT_TIMEOUT if op.error.startswith("TimeoutError") else CONNECTION_ERROR


def normalize(message: str, limit: int = 100) -> str:
    """An error message with decimal numbers blanked (`2.3s left` ->
    `<n>s left`) and cut, so messages that differ only in a duration or
    an address count together."""
    m = re.sub(r"\d+\.\d+(\.\d+\.\d+)?(:\d+)?", "<n>", message)
    return m if len(m) <= limit else m[: limit - 3] + "..."


def percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    """The nearest-rank q-th percentile (0 < q <= 100) of sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def stats_of(name: str, seconds: float, ops: Iterable[Op]) -> Stats:
    """Counts, errors and latency of `ops`."""
    s = Stats(name, seconds)
    lat: List[float] = []
    for o in ops:
        s.ops += 1
        if o.outcome == OK:
            s.ok += 1
            lat.append((o.complete - o.invoke) * 1000)
        else:
            s.errors[error_class(o)] += 1
    lat.sort()
    s.p50_ms, s.p99_ms = percentile(lat, 50), percentile(lat, 99)
    return s


def in_phase(ops: Iterable[Op], phase: Phase) -> List[Op]:
    return [o for o in ops if phase.start <= o.invoke < phase.end]


def summarize(ops: Sequence[Op], phases: Sequence[Phase]) -> List[Stats]:
    """One `Stats` per phase, over the operations invoked in it."""
    return [stats_of(p.name, p.seconds, in_phase(ops, p)) for p in phases]


def per_node(ops: Sequence[Op], phase: Phase, nodes: int) -> Dict[int, Stats]:
    """One `Stats` per node, over the operations of `phase` sent through it."""
    mine = in_phase(ops, phase)
    return {n: stats_of(f"n{n}", phase.seconds, (o for o in mine if o.node == n)) for n in range(nodes)}


def ratio(part: float, whole: float) -> Optional[float]:
    """part / whole, or None when whole is 0."""
    return part / whole if whole > 0 else None


@dataclass
class Recovery:
    """How a node's writes fared from its restart on.

    `first_ok`: seconds from the restart to the answer of the first
    acknowledged write through the node (`first_ok_invoked`: to its
    invocation, the difference is how long it waited); `all_ok_after`: seconds from the restart to just
    after the last failed write through it (0.0 if none failed), so every
    write through it invoked later succeeded; `errors`: the failed writes
    through it after the restart, by normalized message;
    `errors_down`: those while it was down (before the restart)."""

    first_ok: Optional[float]
    first_ok_invoked: Optional[float]
    all_ok_after: float
    errors: Counter
    errors_down: Counter
    writes: int


def recovery(ops: Sequence[Op], node: int, killed: float, restarted: float, until: float) -> Recovery:
    """The `Recovery` of `node`, killed at `killed` and restarted (process
    started) at `restarted`, over writes (SET, DEL) invoked before `until`."""
    writes = sorted(
        (o for o in ops if o.node == node and o.kind in (SET, DEL) and killed <= o.invoke < until),
        key=lambda o: o.invoke,
    )
    down = Counter(normalize(o.error) for o in writes if o.invoke < restarted and o.outcome != OK)
    after = [o for o in writes if o.invoke >= restarted]
    first = next((o for o in after if o.outcome == OK), None)
    first_ok = None if first is None else first.complete - restarted
    first_ok_invoked = None if first is None else first.invoke - restarted
    failed = [o for o in after if o.outcome != OK]
    all_ok_after = max((o.complete - restarted for o in failed), default=0.0)
    errors = Counter(normalize(o.error) for o in failed)
    return Recovery(first_ok, first_ok_invoked, all_ok_after, errors, down, len(after))


def timeline(ops: Sequence[Op], start: float, end: float, nodes: int, step: float = 1.0) -> List[str]:
    """A markdown table of acknowledged/failed operations per node in each
    `step` seconds from `start` (by invocation), to see when a fault
    started costing and when it stopped."""
    buckets = max(1, math.ceil((end - start) / step))
    counts = [[[0, 0] for _ in range(nodes)] for _ in range(buckets)]
    for o in ops:
        b = int((o.invoke - start) // step)
        if 0 <= b < buckets and 0 <= o.node < nodes:
            counts[b][o.node][0 if o.outcome == OK else 1] += 1
    out = ["| s | " + " | ".join(f"n{n} ok/err" for n in range(nodes)) + " |", "|---:|" + "---:|" * nodes]
    for b, row in enumerate(counts):
        out.append(f"| {b * step:g} | " + " | ".join(f"{ok}/{err}" for ok, err in row) + " |")
    return out


def table(rows: Sequence[Stats], baseline: Optional[Stats] = None, label: str = "phase") -> List[str]:
    """A markdown table of `rows`; with `baseline`, each row's ok ops/s as
    a fraction of the baseline's too."""
    out = [
        f"| {label} | s | ok ops/s | of baseline | errors | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for s in rows:
        frac = ratio(s.ok_per_s, baseline.ok_per_s) if baseline else None
        out.append(
            f"| {s.name} | {s.seconds:.1f} | {s.ok_per_s:,.0f} | {fmt_frac(frac)} | "
            f"{s.errors_text()} | {fmt_ms(s.p50_ms)} | {fmt_ms(s.p99_ms)} |"
        )
    return out


def fmt_frac(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:,.0f}"
