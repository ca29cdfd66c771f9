"""The order in which Label Studio serves Sluice's tasks, and what the annotator's panel says about each (pure).

Label Studio's open-source label stream, under "Uncertainty sampling", serves the tasks whose prediction carries
the project's `model_version` lowest `score` first (and tasks without such a prediction after them, at random).
So every task Sluice pushes carries one prediction under one constant version, `QUEUE_MODEL_VERSION`, whose score
is the task's place in Sluice's order, not a model's confidence: escalations first, then audits and gold, then
budgeted reviews, each tier most useful first (its `priority`). The prediction's result is the model's
suggestion, or nothing for a blind task, so a blind task keeps its place without showing anything. With several
annotators Label Studio draws among the first few (annotators + 1) to keep two people off the same task, and it
serves tasks that still need more annotators (overlap) before the rest: both are its own rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["QUEUE_MODEL_VERSION", "queue_score", "task_note", "tier"]

QUEUE_MODEL_VERSION = "sluice-queue"
_FIRST = ("escalation",)
_SECOND = ("audit", "gold")

REASON_WORDS = {
    "escalation": "escalated: a risk signal, a policy rule or a disagreement needs an expert's eye",
    "audit": "a random audit: it keeps Sluice's error estimates honest (answer it as you see it)",
    "gold": "a check item with a known answer",
    "margin": "the model is unsure between its top answers",
    "entropy": "the model is unsure across its answers",
    "least_confidence": "the model is not confident in its answer",
    "diverse": "an unsure item unlike the others",
    "random": "picked at random for review",
    "verifier_uncertainty": "the verifier is unsure whether people accept this response",
    "preference_uncertainty": "it is unclear which response people prefer",
    "field_uncertainty": "some extracted field is doubtful",
}


def tier(queue: str, selection_reason: str) -> int:
    """0: escalations and the expert queue; 1: audits and gold; 2: budgeted reviews."""
    if queue == "expert" or selection_reason in _FIRST:
        return 0
    return 1 if selection_reason in _SECOND else 2


def queue_score(queue: str, selection_reason: str, priority: float) -> float:
    """The prediction score that puts a task in its place: its tier, then the higher its priority (usefulness) the
    lower the score; always in [0, 3), lower served first."""
    useful = max(float(priority), 0.0) if priority == priority else 0.0  # NaN counts as no priority
    return tier(queue, selection_reason) + 1.0 / (2.0 + useful)


def task_note(selection_reason: str, *, calibrated_confidence: float | None, reasons: Sequence[str],
              blind: bool) -> str:
    """What the panel shows above the item: why it is here, the model's calibrated confidence (never on a blind
    task) and the risk codes its routing raised."""
    why = REASON_WORDS.get(selection_reason, selection_reason)
    parts = [f"Why this item: {why}."]
    if blind:
        parts.append("The model's answer is hidden on purpose: give your own.")
    elif calibrated_confidence is not None:
        parts.append(f"Model's calibrated confidence: {100.0 * float(calibrated_confidence):.0f}%.")
    risks = [code for code in reasons if not code.startswith(("confidence_", "calibration_", "spot_check",
                                                             "no_guaranteed", "threshold"))]
    if risks:
        parts.append("Risk signals: " + ", ".join(risks) + ".")
    return " ".join(parts)


def project_instructions(kind: str, *, target: float | None, expert_issues: Sequence[str] = ()) -> str:
    """The project's instructions (HTML), generated from the policy: what to do with a task of `kind`, what an
    audit is, what goes to an expert."""
    task = {
        "classification": "Choose the label that fits the text. The model's suggestion is a suggestion: change it "
                          "when it is wrong.",
        "generation": "Accept the response if it answers the prompt correctly from the context; otherwise reject "
                      "it and, when you can, write the corrected response. Tick every issue you see and give a "
                      "severity (0: none, 5: harmful).",
        "pairwise": "Choose the better response, or say they are equally good. Which one is on the left is "
                    "random: do not let the side decide.",
        "extraction": "Check the fields marked [check] against the document: leave a value that is right, correct "
                      "one that is wrong. Fields not marked were extracted confidently.",
    }.get(kind, "Answer the question shown.")
    lines = [f"<p>{escape(task)}</p>",
             "<p>Tasks come in Sluice's order: escalations first, then audits and check items, then the reviews "
             "that teach the model most. An audit is drawn at random and shown without the model's answer: "
             "answer it as you see it.</p>"]
    if target is not None:
        lines.append(f"<p>What people do not check is kept to at most {100.0 * target:g}% wrong; your answers "
                     "are what proves it.</p>")
    if expert_issues:
        lines.append("<p>Naming any of these issues sends the item to an expert: "
                     f"{escape(', '.join(expert_issues))}.</p>")
    return "".join(lines)
