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
