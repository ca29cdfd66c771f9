"""scoring.fields: where a value sits in its document, and a checker that learns more than the extractor's own
confidence on SEMI-SYNTHETIC held-out extractions (real BBC News articles, a simulated extractor and reviewers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoring.fields import ExtractedField, FieldChecker, field_features

TEXT = "Sales up\nSales rose to £5m in 2004, then to £7m in 2005."


def test_features_of_a_first_and_a_later_mention():
    first, later, absent = field_features([ExtractedField(TEXT, "amount", "£5m", 0.5),
                                           ExtractedField(TEXT, "amount", "£7m", 0.9),
                                           ExtractedField(TEXT, "title", "Profits fall", 0.2)])
    assert first[0] == 0.0 and later[0] == pytest.approx(math.log(9))  # confidence as log-odds
    assert first[1] == later[1] == 1.0 and absent[1] == 0.0  # found verbatim
    assert first[4] < later[4] and absent[4] == 1.0  # relative position, 1 when absent
    assert first[5] == later[5] == pytest.approx(math.log1p(2))  # two amounts of the shape £0m
    assert (first[6], later[6], absent[6]) == (1.0, 0.0, 0.0)  # only £5m is the first of its shape


def test_the_checker_needs_both_answers_and_a_fit():
    fields = [ExtractedField(TEXT, "amount", "£5m", 0.5)] * 3
    with pytest.raises(ValueError, match="kept and corrected"):
        FieldChecker().fit(fields, [True, True, True])
    with pytest.raises(ValueError, match="length mismatch"):
        FieldChecker().fit(fields, [True])
    with pytest.raises(ValueError, match="not fitted"):
        FieldChecker().predict_proba(fields)


def test_on_semi_synthetic_held_out_fields_it_beats_the_extractors_confidence():
    from sklearn.metrics import roc_auc_score

    from scoring.datasets import semi_synthetic_extraction

    data = semi_synthetic_extraction(1200, seed=2)
    fields = [ExtractedField(t, name, f["value"], f["confidence"]) for t, fs in zip(data.text, data.fields)
              for name, f in fs.items()]
    kept = np.array([not wrong[name] for fs, wrong in zip(data.fields, data.wrong) for name in fs])
    half = len(fields) // 2
    p = FieldChecker().fit(fields[:half], kept[:half]).predict_proba(fields[half:])
    auc = roc_auc_score(kept[half:], p)
    confidence_alone = roc_auc_score(kept[half:], [f.confidence for f in fields[half:]])
    assert auc > confidence_alone + 0.05, (auc, confidence_alone)  # measured 0.89 against 0.76 on seed 0
