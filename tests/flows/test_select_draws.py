"""The per-decision draws behind audits and blind tasks: fixed by id, uniform, independent per purpose."""

from __future__ import annotations

import numpy as np

from flows.select import _BLIND_SALT, decision_uniform


def test_draws_are_fixed_by_id_uniform_and_separate_per_purpose():
    ids = list(range(1, 100_001))
    audit = decision_uniform(ids)
    assert np.array_equal(audit, decision_uniform(ids))
    assert audit.min() >= 0.0 and audit.max() < 1.0
    assert abs((audit < 0.1).mean() - 0.1) < 0.005
    blind = decision_uniform(ids, salt=_BLIND_SALT)
    assert abs(np.corrcoef(audit, blind)[0, 1]) < 0.02
    assert np.array_equal(decision_uniform(ids[5:10]), audit[5:10])


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
