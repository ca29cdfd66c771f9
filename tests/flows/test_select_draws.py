"""The select flow's use of the per-decision draws: overlap is fixed per decision and leaves gold alone."""

from __future__ import annotations

import numpy as np


def test_overlap_draw_is_fixed_per_decision_and_leaves_gold_alone():
    from flows.select import assign_overlap

    def tasks():
        return [{"decision_id": k, "overlap": 1} for k in range(4000)] + [{"decision_id": None, "overlap": 1}]

    first, second = tasks(), tasks()
    assign_overlap(first, 0.25, 3)
    assign_overlap(second, 0.25, 3)
    assert [t["overlap"] for t in first] == [t["overlap"] for t in second]
    share = np.mean([t["overlap"] == 3 for t in first[:-1]])
    assert 0.22 < share < 0.28 and first[-1]["overlap"] == 1
    none = tasks()
    assign_overlap(none, 0.0, 3)
    assert {t["overlap"] for t in none} == {1}
