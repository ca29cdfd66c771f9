"""The per-decision draws behind audits and blind tasks: fixed by id, uniform, independent per purpose."""

from __future__ import annotations

import numpy as np

from routing.draws import BLIND_SALT as _BLIND_SALT, decision_uniform


def test_draws_are_fixed_by_id_uniform_and_separate_per_purpose():
    ids = list(range(1, 100_001))
    audit = decision_uniform(ids)
    assert np.array_equal(audit, decision_uniform(ids))
    assert audit.min() >= 0.0 and audit.max() < 1.0
    assert abs((audit < 0.1).mean() - 0.1) < 0.005
    blind = decision_uniform(ids, salt=_BLIND_SALT)
    assert abs(np.corrcoef(audit, blind)[0, 1]) < 0.02
    assert np.array_equal(decision_uniform(ids[5:10]), audit[5:10])


def test_drawn_is_a_fixed_mask_per_decision_and_share() -> None:
    from routing.draws import AUDIT_SALT, BLIND_SALT, drawn

    ids = list(range(20_000))
    mask = drawn(ids, 0.1, salt=AUDIT_SALT)
    assert mask.dtype == bool and 0.09 < mask.mean() < 0.11
    assert (drawn(ids, 0.1, salt=AUDIT_SALT) == mask).all()  # a retry draws the same
    assert 0.0 < (drawn(ids, 0.1, salt=BLIND_SALT) & mask).mean() < 0.02  # purposes are independent (~0.01)
    assert not drawn(ids, 0.0, salt=AUDIT_SALT).any() and drawn([], 0.5, salt=AUDIT_SALT).shape == (0,)
    per_row = drawn([1, 2, 3], [0.0, 1.0, 0.0], salt=AUDIT_SALT)
    assert per_row.tolist() == [False, True, False]


def test_the_pairwise_side_is_a_fair_fixed_coin_per_decision():
    from scipy.stats import binomtest

    from routing.draws import a_on_left

    ids = list(range(1, 20_001))
    left = a_on_left(ids)
    assert (left == a_on_left(ids)).all()  # a retry shows the same side
    assert binomtest(int(left.sum()), len(ids)).pvalue > 1e-4  # fair: about half each way
    assert abs(np.corrcoef(left, decision_uniform(ids, salt=_BLIND_SALT) < 0.5)[0, 1]) < 0.05  # not the blind draw
