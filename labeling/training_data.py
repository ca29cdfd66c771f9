"""Training records from people's answers on LLM-pipeline items, in the forms fine-tuning tools read (pure: the
export commands gather the answers and write these, one JSON object a line).

- SFT: ``{"messages": [... the prompt ..., {"role": "assistant", "content": the accepted or corrected response}],
  "metadata": {...}}``. A rejected response without a correction teaches nothing to imitate: no record.
- DPO: ``{"prompt", "chosen", "rejected", "metadata"}``, from a pairwise answer (a tie gives none) and from a
  correction (the corrected response chosen over the rejected original).
- Extraction: ``{"text", "fields": {name: value}, "metadata"}``, each field as people confirmed or corrected it.

Every record carries its provenance in ``metadata`` (item, route, selection reason and probability, annotators,
agreement, policy and model versions: whatever the caller passes), so a training set can be filtered and audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dpo_from_correction", "dpo_from_pair", "extraction_record", "messages", "sft_record"]

Prompt = str | Sequence[Mapping[str, str]]


def messages(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt as chat messages (a plain string is one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _prompt_text(prompt: Prompt) -> str | list[dict[str, str]]:
    return prompt if isinstance(prompt, str) else messages(prompt)


def sft_record(prompt: Prompt, response: str, *, verdict: str, correction: str | None,
               metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The response people accepted, or their correction of one they rejected; None when there is neither."""
    if verdict not in ("accept", "reject"):
        raise ValueError(f"verdict must be 'accept' or 'reject', got {verdict!r}")
    target = response if verdict == "accept" else (correction or "").strip()
    if not target:
        return None
    source = "accepted" if verdict == "accept" else "corrected"
    return {"messages": [*messages(prompt), {"role": "assistant", "content": target}],
            "metadata": {**metadata, "target": source}}


def dpo_from_pair(prompt: Prompt, response_a: str, response_b: str, *, preferred: str,
                  metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The preferred response chosen over the other; None for a tie."""
    if preferred not in ("a", "b", "tie"):
        raise ValueError(f"preferred must be 'a', 'b' or 'tie', got {preferred!r}")
    if preferred == "tie":
        return None
    chosen, rejected = (response_a, response_b) if preferred == "a" else (response_b, response_a)
    return {"prompt": _prompt_text(prompt), "chosen": chosen, "rejected": rejected,
            "metadata": {**metadata, "source": "pairwise"}}


def dpo_from_correction(prompt: Prompt, response: str, correction: str | None, *,
                        metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """A correction chosen over the response it corrects; None without a correction that differs from it."""
    fixed = (correction or "").strip()
    if not fixed or fixed == response.strip():
        return None
    return {"prompt": _prompt_text(prompt), "chosen": fixed, "rejected": response,
            "metadata": {**metadata, "source": "correction"}}


def extraction_record(text: str, extracted: Mapping[str, Mapping[str, Any]], answers: Mapping[str, str], *,
                      metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every field as people left it: their answer where they gave one, else the extracted
    value; ``metadata`` names the fields people corrected, confirmed (answered with the extracted value) and left
    unreviewed (routed past people, or not answered)."""
    unknown = sorted(set(answers) - set(extracted))
    if unknown:
        raise ValueError(f"answers name fields that were not extracted: {unknown}")
    fields = {name: answers.get(name, value["value"]) for name, value in extracted.items()}
    corrected = sorted(name for name, answer in answers.items() if str(answer) != str(extracted[name]["value"]))
    return {"text": text, "fields": fields,
            "metadata": {**metadata, "corrected": corrected, "confirmed": sorted(set(answers) - set(corrected)),
                         "unreviewed": sorted(set(extracted) - set(answers))}}
