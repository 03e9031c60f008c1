"""The history checker's logic on hand-made histories.

    python3 -m unittest discover -s scripts/history -v

Each test names the rule it proves; the "allowed" ones guard against false
positives (concurrency windows, indeterminate writes, misses).
"""

import unittest

from checker import (
    DEL,
    DELETED_BACK,
    EXPIRE,
    FAIL,
    FUTURE,
    GET,
    OK,
    PERSIST,
    SET,
    STALE,
    TIMEOUT,
    UNKNOWN,
    Op,
    check,
    disagreements,
)


class H:
    """A tiny history builder: times are given directly."""

    def __init__(self):
        self.ops = []

    def op(self, kind, inv, cmp, value=None, outcome=OK, key="k", client="c0"):
        o = Op(len(self.ops), client, 0, kind, key, inv, cmp, outcome, value)
        self.ops.append(o)
        return o

    def set(self, v, inv, cmp, outcome=OK, key="k"):
        return self.op(SET, inv, cmp, v, outcome, key)

    def dele(self, inv, cmp, outcome=OK, key="k"):
        return self.op(DEL, inv, cmp, 1, outcome, key)

    def get(self, v, inv, cmp, key="k"):
        return self.op(GET, inv, cmp, v, OK, key)

    def kinds(self):
        return [v.kind for v in check(self.ops)]


class DeletesStayDeleted(unittest.TestCase):
    def test_a_value_read_after_an_acknowledged_delete_is_a_violation(self):
        h = H()
        h.set("a", 0, 1)
        d = h.dele(2, 3)
        h.get("a", 4, 5)
        vs = check(h.ops)
        self.assertEqual([v.kind for v in vs], [DELETED_BACK])
        self.assertIs(vs[0].witness, d)
        self.assertIn("deleted-value-back on key 'k'", vs[0].render())

    def test_a_read_overlapping_the_delete_may_see_the_value(self):
        h = H()
        h.set("a", 0, 1)
        h.dele(2, 4)
        h.get("a", 3.9, 5)
        self.assertEqual(h.kinds(), [])

    def test_a_set_overlapping_the_delete_may_be_read_after_it(self):
        h = H()
        h.set("a", 0, 2.5)
        h.dele(2, 3)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])

    def test_an_indeterminate_set_may_appear_after_any_delete(self):
        h = H()
        h.set("a", 0, 1, outcome=TIMEOUT)
        h.dele(2, 3)
        h.dele(6, 7)
        h.get("a", 8, 9)
        self.assertEqual(h.kinds(), [])

    def test_an_indeterminate_delete_proves_nothing(self):
        h = H()
        h.set("a", 0, 1)
        h.dele(2, 3, outcome=FAIL)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])

    def test_a_miss_is_always_allowed(self):
        h = H()
        h.set("a", 0, 1)
        h.get(None, 2, 3)
        h.set("b", 4, 5)
        h.get(None, 6, 7)
        self.assertEqual(h.kinds(), [])

    def test_a_delete_of_another_key_does_not_count(self):
        h = H()
        h.set("a", 0, 1)
        h.dele(2, 3, key="other")
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])


class NoOlderValueAfterANewerOne(unittest.TestCase):
    def test_an_older_value_after_a_newer_acknowledged_set_is_a_violation(self):
        h = H()
        h.set("a", 0, 1)
        s2 = h.set("b", 2, 3)
        h.get("a", 4, 5)
        vs = check(h.ops)
        self.assertEqual([v.kind for v in vs], [STALE])
        self.assertIs(vs[0].witness, s2)

    def test_concurrent_sets_may_be_read_in_either_order(self):
        h = H()
        h.set("a", 0, 2)
        h.set("b", 1, 3)
        h.get("a", 4, 5)
        h.get("b", 6, 7)
        h.get("a", 8, 9)
        self.assertEqual(h.kinds(), [])

    def test_a_read_concurrent_with_the_newer_set_may_see_the_older(self):
        h = H()
        h.set("a", 0, 1)
        h.set("b", 2, 4)
        h.get("a", 3, 5)
        self.assertEqual(h.kinds(), [])

    def test_an_indeterminate_newer_set_proves_nothing(self):
        h = H()
        h.set("a", 0, 1)
        h.set("b", 2, 3, outcome=TIMEOUT)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])

    def test_the_latest_acknowledged_write_decides_the_kind(self):
        # A DEL and a SET both prove "a" stale: the DEL is reported.
        h = H()
        h.set("a", 0, 1)
        h.set("b", 2, 3)
        h.dele(4, 5)
        h.get("a", 6, 7)
        self.assertEqual(h.kinds(), [DELETED_BACK])

    def test_the_newer_value_may_still_be_read_after_a_concurrent_delete(self):
        h = H()
        h.set("a", 0, 1)
        h.dele(2, 4)
        h.set("b", 3, 5)
        h.get("b", 6, 7)
        self.assertEqual(h.kinds(), [])


class Rewrites(unittest.TestCase):
    def test_an_expire_after_the_delete_may_bring_the_value_back(self):
        # EXPIRE read "a" (before the DEL was applied) and wrote it back after.
        h = H()
        h.set("a", 0, 1)
        h.op(EXPIRE, 1.5, 3.5, 1)
        h.dele(2, 3)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])

    def test_an_expire_that_found_nothing_wrote_nothing(self):
        h = H()
        h.set("a", 0, 1)
        h.op(EXPIRE, 1.5, 3.5, 0)
        h.dele(2, 3)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [DELETED_BACK])

    def test_an_indeterminate_persist_may_rewrite_later(self):
        h = H()
        h.set("a", 0, 1)
        h.op(PERSIST, 1.5, 1.6, None, outcome=TIMEOUT)
        h.dele(2, 3)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [])

    def test_a_rewrite_finished_before_the_delete_does_not_excuse(self):
        h = H()
        h.set("a", 0, 1)
        h.op(EXPIRE, 1.2, 1.5, 1)
        h.dele(2, 3)
        h.get("a", 4, 5)
        self.assertEqual(h.kinds(), [DELETED_BACK])


class OtherKinds(unittest.TestCase):
    def test_a_value_never_written_is_reported(self):
        h = H()
        h.set("a", 0, 1, key="other")
        h.get("a", 2, 3)
        h.get("zzz", 4, 5)
        self.assertEqual(h.kinds(), [UNKNOWN, UNKNOWN])

    def test_a_value_written_only_after_the_read_ended_is_reported(self):
        h = H()
        h.get("a", 0, 1)
        h.set("a", 2, 3)
        self.assertEqual(h.kinds(), [FUTURE])

    def test_a_read_overlapping_the_set_may_see_it(self):
        h = H()
        h.get("a", 0, 2.5)
        h.set("a", 2, 3)
        self.assertEqual(h.kinds(), [])


class Agreement(unittest.TestCase):
    def test_nodes_that_differ_are_reported_and_equal_ones_are_not(self):
        reads = {"k1": {0: "a", 1: "a", 2: "a"}, "k2": {0: None, 1: None}, "k3": {0: "a", 1: None}}
        self.assertEqual(list(disagreements(reads)), ["k3"])

    def test_under_memory_pressure_only_different_values_disagree(self):
        reads = {"k1": {0: "a", 1: None, 2: "a"}, "k2": {0: "a", 1: "b", 2: None}}
        self.assertEqual(list(disagreements(reads, misses_allowed=True)), ["k2"])


class Scale(unittest.TestCase):
    def test_many_operations_are_checked_without_false_positives(self):
        # Sequential writes and reads of one key by one client: every read
        # sees the latest write, which is never a violation.
        h = H()
        t = 0.0
        last = None
        for i in range(20000):
            if i % 3 == 0:
                last = f"v{i}"
                h.set(last, t, t + 0.5)
            elif i % 3 == 1:
                h.get(last, t, t + 0.5)
            else:
                h.dele(t, t + 0.5) if i % 7 == 0 else h.get(last, t, t + 0.5)
                if i % 7 == 0:
                    last = None
            t += 1
        self.assertEqual(h.kinds(), [])


if __name__ == "__main__":
    unittest.main()
