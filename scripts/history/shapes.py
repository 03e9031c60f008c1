"""Partition shapes as directed cuts, and the iptables rules that make them.

Pure logic, no I/O: `availability.py` (and `run.py`'s symmetric
partitions) apply the rules inside the nodes' network namespaces, and
`test_shapes.py` checks them. See docs/HISTORY.md.

A *cut* `(x, y)` drops every packet from node x to node y; packets from y
to x still pass unless `(y, x)` is cut too. A shape is a set of cuts over
nodes `0..n-1`:

- `isolate`: one node cut from every other, both ways.
- `split`: a minority of `(n - 1) // 2` nodes (2 of 5) cut from the rest,
  both ways.
- `bridge`: one node (the bridge) reaches everyone; the others form two
  halves that cannot reach each other. With 5 nodes each half plus the
  bridge is a majority of 3.
- `oneway`: packets from one node to one other are dropped, the other
  direction passes. (Over TCP this stops new connections both ways, since
  the handshake needs both directions, and stalls established ones in the
  direction whose acknowledgements are lost; datagrams really are cut in
  one direction only.)

Which nodes play which part is drawn from a seeded `random.Random`, so a
seed names the shape exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, List, Tuple

#: The partition shapes, in the order they run by default.
SHAPES = ("isolate", "split", "bridge", "oneway")

Cut = Tuple[int, int]


class ShapeError(ValueError):
    """A shape that cannot be built: unknown name, too few nodes, or a cut
    naming a node out of range or the same node twice."""


@dataclass(frozen=True)
class Shape:
    """One partition: its name, a one-line description, the directed cuts,
    and each node's part in it (for per-node reports)."""

    name: str
    detail: str
    cuts: FrozenSet[Cut]
    roles: Dict[int, str] = field(default_factory=dict)

    def reaches(self, x: int, y: int) -> bool:
        """Whether packets from x arrive at y."""
        return (x, y) not in self.cuts


def both_ways(side_a: Iterable[int], side_b: Iterable[int]) -> FrozenSet[Cut]:
    """Every cut between two sides, in both directions."""
    b = list(side_b)
    return frozenset(c for a in side_a for y in b for c in ((a, y), (y, a)))


def plan(name: str, nodes: int, rng: random.Random) -> Shape:
    """The shape `name` over `nodes` nodes, its parts drawn from `rng`."""
    if name not in SHAPES:
        raise ShapeError(f"unknown shape {name!r} (one of {', '.join(SHAPES)})")
    need = 3 if name == "bridge" else 2
    if nodes < need:
        raise ShapeError(f"shape {name!r} needs at least {need} nodes, not {nodes}")
    idx = list(range(nodes))
    rng.shuffle(idx)
    if name == "isolate":
        x, rest = idx[0], sorted(idx[1:])
        roles = {i: "majority" for i in rest}
        roles[x] = "isolated"
        return Shape(name, f"n{x} isolated from {fmt(rest)}", both_ways([x], rest), roles)
    if name == "split":
        k = max(1, (nodes - 1) // 2)
        a, b = sorted(idx[:k]), sorted(idx[k:])
        roles = {i: "minority" for i in a}
        roles.update({i: "majority" for i in b})
        return Shape(name, f"{fmt(a)} | {fmt(b)}", both_ways(a, b), roles)
    if name == "bridge":
        x, rest = idx[0], idx[1:]
        half = len(rest) // 2
        a, b = sorted(rest[:half]), sorted(rest[half:])
        roles = {i: "half 1" for i in a}
        roles.update({i: "half 2" for i in b})
        roles[x] = "bridge"
        return Shape(name, f"n{x} bridges {fmt(a)} and {fmt(b)}, which are cut apart", both_ways(a, b), roles)
    x, y = idx[0], idx[1]
    roles = {i: "-" for i in idx}
    roles[x], roles[y] = "sender (cut)", "receiver"
    return Shape(name, f"n{x} -> n{y} dropped, n{y} -> n{x} passes", frozenset({(x, y)}), roles)


def fmt(nodes: Iterable[int]) -> str:
    return "{" + ",".join(f"n{i}" for i in nodes) + "}"


def cut_rules(cuts: Iterable[Cut], nodes: int, ip: Callable[[int], str]) -> Dict[int, List[List[str]]]:
    """iptables arguments (after `iptables`), per node namespace, that drop
    the packets of each cut `(x, y)`: on x, `OUTPUT -d ip(y)`; on y, `INPUT
    -s ip(x)` (either alone would do; both keep the cut if one namespace's
    rules are flushed early). Deterministic order."""
    rules: Dict[int, List[List[str]]] = {}
    for x, y in sorted(set(cuts)):
        for n in (x, y):
            if not 0 <= n < nodes:
                raise ShapeError(f"cut ({x}, {y}) names a node outside 0..{nodes - 1}")
        if x == y:
            raise ShapeError(f"cut ({x}, {y}) from a node to itself")
        rules.setdefault(x, []).append(["-A", "OUTPUT", "-d", ip(y), "-j", "DROP"])
        rules.setdefault(y, []).append(["-A", "INPUT", "-s", ip(x), "-j", "DROP"])
    return rules
