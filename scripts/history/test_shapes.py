"""Partition shapes and their iptables rules (shapes.py).

    python3 -m unittest discover -s scripts/history -v

Each shape is checked through who reaches whom, and the rules through the
packets they would drop, so a rule built in the wrong chain or direction
fails here before it silently tests the wrong partition.
"""

import random
import unittest

from shapes import SHAPES, ShapeError, both_ways, cut_rules, plan


def ip(i):
    return f"10.0.0.{i + 1}"


def dropped(rules, src, dst):
    """Whether the rules drop a packet from node src to node dst: src's
    OUTPUT to dst's address, or dst's INPUT from src's address."""
    out = ["-A", "OUTPUT", "-d", ip(dst), "-j", "DROP"] in rules.get(src, [])
    inp = ["-A", "INPUT", "-s", ip(src), "-j", "DROP"] in rules.get(dst, [])
    return out or inp


class Shapes(unittest.TestCase):
    def plans(self, name, nodes=5):
        return [plan(name, nodes, random.Random(seed)) for seed in range(20)]

    def test_isolate_cuts_one_node_from_all_others_both_ways(self):
        for s in self.plans("isolate"):
            (x,) = [i for i, r in s.roles.items() if r == "isolated"]
            for y in range(5):
                if y != x:
                    self.assertFalse(s.reaches(x, y))
                    self.assertFalse(s.reaches(y, x))
            self.assertEqual(len(s.cuts), 8)

    def test_split_is_two_against_three(self):
        for s in self.plans("split"):
            a = [i for i, r in s.roles.items() if r == "minority"]
            b = [i for i, r in s.roles.items() if r == "majority"]
            self.assertEqual((len(a), len(b)), (2, 3))
            self.assertEqual(s.cuts, both_ways(a, b))
            self.assertTrue(all(s.reaches(x, y) for x in a for y in a))

    def test_bridge_reaches_both_halves_which_cannot_reach_each_other(self):
        for s in self.plans("bridge"):
            (x,) = [i for i, r in s.roles.items() if r == "bridge"]
            h1 = [i for i, r in s.roles.items() if r == "half 1"]
            h2 = [i for i, r in s.roles.items() if r == "half 2"]
            self.assertEqual((len(h1), len(h2)), (2, 2))
            for y in h1 + h2:
                self.assertTrue(s.reaches(x, y) and s.reaches(y, x))
            for a in h1:
                for b in h2:
                    self.assertFalse(s.reaches(a, b) or s.reaches(b, a))
            # Each half with the bridge is a majority.
            self.assertGreater(len(h1) + 1, 5 / 2)

    def test_oneway_drops_one_direction_of_one_pair(self):
        for s in self.plans("oneway"):
            self.assertEqual(len(s.cuts), 1)
            ((x, y),) = s.cuts
            self.assertNotEqual(x, y)
            self.assertFalse(s.reaches(x, y))
            self.assertTrue(s.reaches(y, x))
            self.assertEqual((s.roles[x], s.roles[y]), ("sender (cut)", "receiver"))
            self.assertTrue(s.detail.startswith(f"n{x} -> n{y} dropped"))

    def test_the_seed_names_the_shape(self):
        for name in SHAPES:
            a = plan(name, 5, random.Random(7))
            self.assertEqual(a, plan(name, 5, random.Random(7)))
        self.assertGreater(len({plan("isolate", 5, random.Random(s)).cuts for s in range(20)}), 1)

    def test_bad_shapes_are_refused(self):
        with self.assertRaises(ShapeError):
            plan("triangle", 5, random.Random(1))
        with self.assertRaises(ShapeError):
            plan("bridge", 2, random.Random(1))


class Rules(unittest.TestCase):
    def test_a_oneway_cut_drops_only_its_direction(self):
        rules = cut_rules({(0, 1)}, 3, ip)
        self.assertTrue(dropped(rules, 0, 1))
        self.assertFalse(dropped(rules, 1, 0))
        self.assertEqual(rules[0], [["-A", "OUTPUT", "-d", ip(1), "-j", "DROP"]])
        self.assertEqual(rules[1], [["-A", "INPUT", "-s", ip(0), "-j", "DROP"]])
        self.assertNotIn(2, rules)

    def test_rules_drop_exactly_the_cuts_of_every_shape(self):
        for name in SHAPES:
            for seed in range(10):
                s = plan(name, 5, random.Random(seed))
                rules = cut_rules(s.cuts, 5, ip)
                for x in range(5):
                    for y in range(5):
                        if x != y:
                            self.assertEqual(dropped(rules, x, y), not s.reaches(x, y), (name, seed, x, y))

    def test_symmetric_partition_rules_are_the_ones_run_py_always_made(self):
        # run.py's partition added, in each namespace x and for each y on
        # the other side, INPUT -s y and OUTPUT -d y.
        rules = cut_rules(both_ways([0], [1, 2]), 3, ip)
        self.assertEqual(
            sorted(map(tuple, rules[0])),
            sorted(
                ("-A", chain, flag, ip(y), "-j", "DROP")
                for y in (1, 2)
                for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d"))
            ),
        )
        self.assertEqual(len(rules[1]), 2)

    def test_cuts_naming_bad_nodes_are_refused(self):
        with self.assertRaises(ShapeError):
            cut_rules({(0, 5)}, 5, ip)
        with self.assertRaises(ShapeError):
            cut_rules({(2, 2)}, 5, ip)
        with self.assertRaises(ShapeError):
            cut_rules({(-1, 2)}, 5, ip)


if __name__ == "__main__":
    unittest.main()
