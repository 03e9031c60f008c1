"""History checks for a cache: no acknowledged delete undone, no older value
after a newer one was acknowledged, and (separately) replica agreement after
healing.

Pure logic, no I/O: `run.py` records the history over real nodes, and
`test_checker.py` feeds hand-made histories. See docs/HISTORY.md.

The model. Every operation has an invoke time and, once it answered, a
complete time (one monotonic clock for every client). An operation whose
answer is an error or never came (timeout, connection lost) is
*indeterminate*: a write may have been applied at any time after its invoke,
even long after (hints, anti-entropy), so its complete time counts as
infinity. Values are unique per SET, so a value read names the one SET that
wrote it.

A GET g of key k returning v (written by SET s) is a violation if some
acknowledged write X of k (a SET, or a DEL: a DEL always writes a tombstone)
was invoked after s completed and completed before g was invoked: X is
ordered after s in real time, so it has the higher version, and g (which
started after X was acknowledged) must see X or something newer, or miss.
A miss is always allowed (a cache forgets). X a DEL is kind
`deleted-value-back`, X a SET is `stale-value`.

EXPIRE and PERSIST (positive times only) read the value then write it back
with the new expiry, under a new version: they can bring back the value
they read. Which value they read is unknown (the reply is a count), so an
EXPIRE/PERSIST that answered 1, or is indeterminate, counts as a possible
writer of any value whose SET was invoked before it completed; an answer
of 0 wrote nothing. They are never used as the witness X. The check then
uses the latest possible writer of v that started before g completed.

Two more kinds: `unknown-value` (a value no SET of this key wrote) and
`value-from-future` (the SET of v was invoked after g completed).
"""

from __future__ import annotations

import bisect
import sys
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

INF = math.inf

#: Operation kinds.
SET, DEL, GET, EXPIRE, PERSIST = "set", "del", "get", "expire", "persist"
#: Outcomes: `ok` (a reply that is not an error), `fail` (an error reply:
#: indeterminate for writes), `timeout` (no reply: indeterminate).
OK, FAIL, TIMEOUT = "ok", "fail", "timeout"

#: Violation kinds.
DELETED_BACK = "deleted-value-back"
STALE = "stale-value"
UNKNOWN = "unknown-value"
FUTURE = "value-from-future"
VIOLATION_KINDS = (DELETED_BACK, STALE, UNKNOWN, FUTURE)


def short(value: object, limit: int = 24) -> str:
    """A value for a report: long (padded) values cut, with their length."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"..({len(value)} chars)"
    return repr(value)


@dataclass
class Op:
    """One recorded operation.

    `value`: for SET the value written; for GET the value read (None: a
    miss); for DEL/EXPIRE/PERSIST the integer reply. `complete` is the time
    the answer arrived (or the client gave up), kept for display even when
    the operation is indeterminate.
    """

    id: int
    client: str
    node: int
    kind: str
    key: str
    invoke: float
    complete: float
    outcome: str
    value: object = None
    error: str = ""

    @property
    def acked(self) -> bool:
        """A reply that is not an error."""
        return self.outcome == OK

    @property
    def effective_complete(self) -> float:
        """The complete time, or infinity when the effect is indeterminate."""
        return self.complete if self.acked else INF

    def is_rewrite(self) -> bool:
        """An EXPIRE/PERSIST that may have written the value back."""
        if self.kind not in (EXPIRE, PERSIST):
            return False
        return not self.acked or self.value == 1

    def describe(self, t0: float = 0.0) -> str:
        """One line for a report; times in seconds since `t0`."""
        end = f"{self.complete - t0:9.4f}"
        if self.kind == GET:
            what = f"GET {self.key} -> {short(self.value)}" if self.acked else f"GET {self.key}"
        elif self.kind == SET:
            what = f"SET {self.key} {short(self.value)}"
        else:
            what = f"{self.kind.upper()} {self.key}" + (f" -> {self.value}" if self.acked else "")
        status = "ok" if self.acked else f"{self.outcome} ({self.error})" if self.error else self.outcome
        return (
            f"#{self.id:<7} [{self.invoke - t0:9.4f}, {end}] {self.client:>6} via n{self.node}: "
            f"{what}  {status}"
        )


@dataclass
class Violation:
    """A GET whose value breaks the rules, with the operations that prove it."""

    kind: str
    key: str
    get: Op
    writer: Optional[Op] = None
    witness: Optional[Op] = None
    excerpt: List[Op] = field(default_factory=list)

    def render(self, t0: float = 0.0) -> str:
        """A multi-line description with the history excerpt."""
        lines = [f"{self.kind} on key {self.key!r}: {self.get.describe(t0)}"]
        if self.writer is not None:
            lines.append(f"    value written by   {self.writer.describe(t0)}")
        if self.witness is not None:
            lines.append(f"    acknowledged after {self.witness.describe(t0)}")
        if self.excerpt:
            lines.append("    history of the key in that window:")
            lines.extend("      " + o.describe(t0) for o in self.excerpt)
        return "\n".join(lines)


class _KeyIndex:
    """Acknowledged SETs and DELs of one key, by complete time, with the
    running maximum of their invoke times (to find a witness quickly)."""

    def __init__(self, ops: List[Op], kind: str):
        acked = sorted((o for o in ops if o.kind == kind and o.acked), key=lambda o: o.complete)
        self.completes = [o.complete for o in acked]
        self.best: List[Op] = []
        for o in acked:
            if not self.best or o.invoke > self.best[-1].invoke:
                self.best.append(o)
            else:
                self.best.append(self.best[-1])

    def witness(self, before: float, after: float) -> Optional[Op]:
        """An op that completed before `before` and was invoked after `after`."""
        i = bisect.bisect_left(self.completes, before)
        if i == 0:
            return None
        cand = self.best[i - 1]
        return cand if cand.invoke > after else None


def check(history: Iterable[Op], excerpt_limit: int = 16) -> List[Violation]:
    """All violations of rules (1) and (2) in `history`, in GET order."""
    ops = sorted(history, key=lambda o: (o.invoke, o.id))
    by_key: Dict[str, List[Op]] = {}
    writers: Dict[object, Op] = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
        if o.kind == SET:
            writers[o.value] = o
    out: List[Violation] = []
    for key, kops in by_key.items():
        dels = _KeyIndex(kops, DEL)
        sets = _KeyIndex(kops, SET)
        rewrites = [o for o in kops if o.is_rewrite()]
        for g in kops:
            if g.kind != GET or not g.acked or g.value is None:
                continue
            s = writers.get(g.value)
            if s is None or s.key != key:
                out.append(Violation(UNKNOWN, key, g, writer=s))
                continue
            if s.invoke > g.complete:
                out.append(Violation(FUTURE, key, g, writer=s))
                continue
            # The latest possible write of this value that began before g ended.
            last = s.effective_complete
            for e in rewrites:
                if e.invoke < g.complete and e.effective_complete > s.invoke:
                    last = max(last, e.effective_complete)
            if last == INF:
                continue
            w = dels.witness(g.invoke, last)
            kind = DELETED_BACK
            if w is None:
                w = sets.witness(g.invoke, last)
                kind = STALE
            if w is None:
                continue
            window = [
                o for o in kops if o.invoke <= g.complete and o.effective_complete >= s.invoke
            ]
            window = [o for o in window if o.kind != GET or o is g]
            if len(window) > excerpt_limit:
                tail = window[-(excerpt_limit - 2) :]
                window = sorted(
                    {id(o): o for o in [s, w] + tail}.values(), key=lambda o: (o.invoke, o.id)
                )
            out.append(Violation(kind, key, g, writer=s, witness=w, excerpt=window))
    out.sort(key=lambda v: (v.get.invoke, v.get.id))
    return out


def disagreements(
    reads: Dict[str, Dict[int, object]], misses_allowed: bool = False
) -> Dict[str, Dict[int, object]]:
    """Keys whose final reads differ between nodes.

    `reads[key][node]` is the value read (None: absent). Nodes whose read
    failed are left out of `reads` by the caller (reported apart). With
    `misses_allowed` (nodes evicted values for memory, so a read may miss
    what others still hold), only different values count: which one is
    right is the history check's business."""

    def differ(per: Dict[int, object]) -> bool:
        seen = set(per.values())
        if misses_allowed:
            seen.discard(None)
        return len(seen) > 1

    return {k: per for k, per in reads.items() if differ(per)}


def load(path: str) -> List[Op]:
    """A history written by `run.py --history-out` (JSON lines)."""
    import json

    with open(path) as f:
        return [Op(**json.loads(line)) for line in f if line.strip()]


def main(argv: List[str]) -> int:
    """`python3 checker.py HISTORY.jsonl`: re-checks a saved history."""
    if len(argv) != 1:
        print("usage: checker.py HISTORY.jsonl", file=sys.stderr)
        return 2
    ops = load(argv[0])
    t0 = min((o.invoke for o in ops if o.client != "final"), default=0.0)
    vs = check(ops)
    for v in vs:
        print(v.render(t0))
    counts = {k: sum(1 for v in vs if v.kind == k) for k in VIOLATION_KINDS}
    print(f"{len(ops)} operations; violations: {counts}")
    return 1 if vs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
