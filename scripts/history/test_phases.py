"""Phase figures and restart recovery (phases.py) on hand-made histories.

    python3 -m unittest discover -s scripts/history -v
"""

import unittest

from checker import DEL, FAIL, GET, OK, SET, TIMEOUT, Op
from phases import (
    CLIENT_TIMEOUT,
    CONNECTION_ERROR,
    Phase,
    error_class,
    normalize,
    per_node,
    percentile,
    recovery,
    stats_of,
    summarize,
    table,
    timeline,
)


def op(inv, cmp, outcome=OK, error="", node=0, kind=SET):
    op.n += 1
    return Op(op.n, "c0", node, kind, "k", inv, cmp, outcome, "v", error)


op.n = 0


class Errors(unittest.TestCase):
    def test_error_classes_are_the_reply_code_or_what_the_client_saw(self):
        self.assertEqual(error_class(op(0, 1, FAIL, "NOQUORUM quorum not reached: 1 of 2")), "NOQUORUM")
        self.assertEqual(error_class(op(0, 1, FAIL, "TRYAGAIN not ready: joining")), "TRYAGAIN")
        self.assertEqual(error_class(op(0, 1, TIMEOUT, "ConnectionError: Error 111 connecting")), CONNECTION_ERROR)
        self.assertEqual(error_class(op(0, 1, TIMEOUT, "TimeoutError: Timeout reading")), CLIENT_TIMEOUT)
        self.assertEqual(error_class(op(0, 1)), "")

    def test_messages_that_differ_in_a_duration_or_address_count_together(self):
        a = normalize("ConnectionError: Error 111 connecting to 10.231.5.3:6379. Connection refused.")
        b = normalize("ConnectionError: Error 111 connecting to 10.231.5.1:6379. Connection refused.")
        self.assertEqual(a, b)
        self.assertIn("111", a)
        self.assertEqual(normalize("TRYAGAIN barrier: 2.35s left"), normalize("TRYAGAIN barrier: 0.4s left"))
        self.assertEqual(normalize("TIMEOUT 0 of 2 required"), "TIMEOUT 0 of 2 required")
        self.assertLessEqual(len(normalize("x" * 500)), 100)


class Figures(unittest.TestCase):
    def test_percentiles_are_nearest_rank(self):
        v = list(range(1, 101))
        self.assertEqual(percentile(v, 50), 50)
        self.assertEqual(percentile(v, 99), 99)
        self.assertEqual(percentile(v, 100), 100)
        self.assertEqual(percentile([7], 99), 7)
        self.assertIsNone(percentile([], 50))

    def test_ops_belong_to_the_phase_they_were_invoked_in(self):
        ops = [op(0.5, 0.6), op(0.9, 1.5), op(1.2, 1.3, FAIL, "NOQUORUM x"), op(1.4, 1.401), op(2.5, 2.6)]
        base, fault, healed = summarize(ops, [Phase("baseline", 0, 1), Phase("fault", 1, 2), Phase("healed", 2, 4)])
        self.assertEqual((base.ops, base.ok), (2, 2))
        self.assertEqual((fault.ops, fault.ok), (2, 1))
        self.assertEqual(fault.errors, {"NOQUORUM": 1})
        self.assertAlmostEqual(fault.error_rate, 0.5)
        self.assertAlmostEqual(healed.ok_per_s, 0.5)
        # Latency over acknowledged operations only: the error's 100 ms is not in it.
        self.assertAlmostEqual(fault.p99_ms, 1.0, places=3)
        self.assertAlmostEqual(base.p99_ms, 600.0, places=3)

    def test_per_node_figures_split_by_the_node_each_op_went_through(self):
        ops = [op(0, 0.1, node=0), op(0, 0.1, node=0), op(0, 1, FAIL, "TIMEOUT t", node=1)]
        n = per_node(ops, Phase("fault", 0, 2), 3)
        self.assertEqual((n[0].ok, n[1].ok, n[2].ops), (2, 0, 0))
        self.assertEqual(n[1].errors_text(), "TIMEOUT 100.0%")
        self.assertEqual(n[2].errors_text(), "-")

    def test_the_table_shows_each_phase_against_the_baseline(self):
        base = stats_of("baseline", 1.0, [op(0, 0.001)] * 4)
        fault = stats_of("fault", 1.0, [op(0, 0.001), op(0, 2, FAIL, "NOQUORUM q")])
        rows = table([base, fault], base)
        self.assertEqual(len(rows), 4)
        self.assertIn("| fault | 1.0 | 1 | 0.25 | NOQUORUM 50.0% |", rows[3])


class Timeline(unittest.TestCase):
    def test_each_second_counts_each_nodes_outcomes(self):
        ops = [op(10.2, 10.3), op(10.9, 12.0, node=1), op(11.5, 11.6, FAIL, "NOQUORUM q", node=1), op(13.0, 13.1)]
        rows = timeline(ops, 10.0, 12.5, 2)
        self.assertEqual(rows[0], "| s | n0 ok/err | n1 ok/err |")
        self.assertEqual(rows[2:], ["| 0 | 1/0 | 1/0 |", "| 1 | 0/0 | 0/1 |", "| 2 | 0/0 | 0/0 |"])


class Restart(unittest.TestCase):
    def test_recovery_times_count_from_the_restart(self):
        killed, restarted = 10.0, 12.0
        ops = [
            op(9.0, 9.01),  # before the kill: not counted
            op(10.5, 10.51, TIMEOUT, "ConnectionError: Error 111 connecting to 10.0.0.3:6379."),
            op(12.1, 12.11, FAIL, "TIMEOUT timed out with 0 of 2 required owners"),
            op(13.0, 13.01, FAIL, "TIMEOUT timed out with 0 of 2 required owners"),
            op(13.5, 14.6, kind=DEL),  # waited 1.1 s, then acknowledged
            op(12.5, 12.6, node=1),  # another node
            op(12.7, 12.8, FAIL, "NOQUORUM q", kind=GET),  # a read: not a write
            op(15.0, 15.01),
        ]
        r = recovery(ops, 0, killed, restarted, until=20.0)
        self.assertAlmostEqual(r.first_ok, 2.6)
        self.assertAlmostEqual(r.first_ok_invoked, 1.5)
        self.assertAlmostEqual(r.all_ok_after, 1.01)
        self.assertEqual(r.errors, {"TIMEOUT timed out with 0 of 2 required owners": 2})
        self.assertEqual(r.errors_down, {"ConnectionError: Error 111 connecting to <n>.": 1})
        self.assertEqual(r.writes, 4)

    def test_a_node_whose_writes_never_recover_says_so(self):
        ops = [op(12.1, 12.2, FAIL, "TRYAGAIN barrier"), op(19.0, 19.5, FAIL, "TRYAGAIN barrier")]
        r = recovery(ops, 0, 10.0, 12.0, until=20.0)
        self.assertIsNone(r.first_ok)
        self.assertAlmostEqual(r.all_ok_after, 7.5)
        self.assertEqual(sum(r.errors.values()), 2)


if __name__ == "__main__":
    unittest.main()
