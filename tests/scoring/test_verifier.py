"""scoring.verifier: features of support and form, the fitted verifier's contract, and its separation of supported
from unsupported responses on SEMI-SYNTHETIC held-out items (real BBC News articles, responses drawn from them or
made wrong; easy by construction, since accepted responses quote the context verbatim: real verdicts are harder)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.verifier import GenerationExample, Verifier, verifier_features

CONTEXT = "The central bank raised interest rates by 25 basis points on Tuesday to curb inflation."


def test_support_features_tell_a_quoted_response_from_an_invented_one():
    quoted = GenerationExample("What did the bank do?", "The central bank raised interest rates by 25 basis points.",
                               CONTEXT)
    invented = GenerationExample("What did the bank do?", "The bank cut rates by 75 points after a strike.", CONTEXT)
    features = verifier_features([quoted, invented])
    in_context, run, made_up = features[:, 0], features[:, 2], features[:, 5]
    assert in_context[0] == 1.0 and in_context[1] < 0.5
    assert run[0] > 0.8 and run[1] == 0.0
    assert (made_up == [0.0, 1.0]).all()  # 75 appears nowhere in the prompt or the context
    scored = verifier_features([GenerationExample("q", "a", "", confidence=0.8, scores={"judge": 4.0})],
                               score_names=("judge", "trust"))
    assert list(scored[0, -6:]) == [0.8, 0.0, 4.0, 0.0, 0.0, 1.0]  # confidence, then judge, then a missing trust


def test_the_verifier_needs_both_verdicts_and_a_fit():
    examples = [GenerationExample("q", "a", CONTEXT)] * 3
    with pytest.raises(ValueError, match="both accepted and rejected"):
        Verifier().fit(examples, [True, True, True])
    with pytest.raises(ValueError, match="length mismatch"):
        Verifier().fit(examples, [True, False])
    with pytest.raises(ValueError, match="not fitted"):
        Verifier().predict_proba(examples)


def test_on_semi_synthetic_held_out_items_the_verifier_uses_the_context():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from scoring.datasets import semi_synthetic_generation

    data = semi_synthetic_generation(1000, seed=0)
    assert set(data["how"]) == {"from the article", "another article of the topic", "a number changed"}
    examples = [GenerationExample(p, r, c) for p, r, c in zip(data.prompt, data.response, data.context)]
    accepted = data.accepted.to_numpy()
    fitted = Verifier().fit(examples[:600], accepted[:600])
    auc = roc_auc_score(accepted[600:], fitted.predict_proba(examples[600:]))
    # the same learner without the context: what reading the response alone can do here
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(data.response[:600])
    alone = LogisticRegression(max_iter=2000).fit(words.transform(data.response[:600]), accepted[:600])
    baseline = roc_auc_score(accepted[600:], alone.predict_proba(words.transform(data.response[600:]))[:, 1])
    assert auc > 0.95 and auc - baseline > 0.3, (auc, baseline)  # measured: 1.00 against 0.52
    changed = (data.how[600:] == "a number changed").to_numpy()
    assert np.median(fitted.predict_proba([examples[600 + i] for i in np.flatnonzero(changed)])) < 0.2
