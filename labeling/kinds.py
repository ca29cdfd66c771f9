"""Label Studio queues for the outputs of LLM pipelines: the labeling config of each kind, the task data it reads,
and the human answer read back from an annotation's result (pure: no network).

- ``generation``: the prompt (and the documents the pipeline used, if any) above the response; a verdict
  (accept / reject), a corrected response (a text area), issue categories (several) and a severity from 0 to 5
  (ordinal, so agreement on it is Krippendorff's alpha for ordinal data).
- ``pairwise``: the prompt and two responses side by side in Label Studio's ``Pairwise`` tag, with a tie
  option. Which response is shown on the left is a fixed fair coin per decision (``routing.draws.a_on_left``),
  kept in the task data (``left_is``), so an answer is read back as ``a`` or ``b`` whatever the side and
  position bias can be measured.
- ``extraction``: the document and, per extracted field, a text area holding the extracted value to confirm or
  correct (the field's confidence shown beside its name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

__all__ = [
    "DEFAULT_ISSUES",
    "extraction_answer",
    "extraction_config",
    "extraction_data",
    "generation_answer",
    "generation_config",
    "generation_data",
    "pairwise_answer",
    "pairwise_config",
    "pairwise_data",
]

DEFAULT_ISSUES = ("factual_error", "unsupported_by_context", "incomplete", "unsafe", "off_topic", "format", "tone")
SEVERITIES = tuple(str(level) for level in range(6))


def _prompt_text(prompt: str | Sequence[Mapping[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{message['role']}: {message['content']}" for message in prompt)


def _context_text(context: str | Sequence[str] | None) -> str:
    if context is None:
        return ""
    return context if isinstance(context, str) else "\n\n---\n\n".join(context)


def _names(values: Sequence[str], what: str) -> None:
    bad = [v for v in values if not isinstance(v, str) or not v.strip()]
    if not values or bad or len(set(values)) != len(values):
        raise ValueError(f"{what} must be non-empty, unique strings, got {list(values)!r}")


def generation_config(issues: Sequence[str] = DEFAULT_ISSUES) -> str:
    """The review of one generated response: verdict, correction, issue categories and severity."""
    _names(issues, "issue categories")
    choices = "".join(f"<Choice value={quoteattr(issue)}/>" for issue in issues)
    severities = "".join(f'<Choice value="{level}"/>' for level in SEVERITIES)
    return (
        '<View>'
        '<Header value="Prompt"/><Text name="prompt" value="$prompt"/>'
        '<Collapse><Panel value="Context the pipeline used"><Text name="context" value="$context"/></Panel></Collapse>'
        '<Header value="Response"/><Text name="response" value="$response"/>'
        '<Choices name="verdict" toName="response" choice="single" showInline="true" required="true">'
        '<Choice value="accept"/><Choice value="reject"/></Choices>'
        '<Header value="Corrected response (when the response is wrong)"/>'
        '<TextArea name="correction" toName="response" editable="true" maxSubmissions="1" rows="6"/>'
        f'<Choices name="issues" toName="response" choice="multiple" showInline="true">{choices}</Choices>'
        f'<Header value="Severity (0: none, 5: harmful)"/>'
        f'<Choices name="severity" toName="response" choice="single" showInline="true">{severities}</Choices>'
        '</View>'
    )


def generation_data(item_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"item_id": item_id, "prompt": _prompt_text(payload["prompt"]), "response": payload["response"],
            "context": _context_text(payload.get("context"))}


def _by_name(result: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(region.get("from_name")): region.get("value") or {} for region in result}


def generation_answer(result: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"label": "accept"|"reject"|None, "correction", "issues", "severity"}`` from an annotation's result."""
    regions = _by_name(result)
    verdict = (regions.get("verdict", {}).get("choices") or [None])[0]
    text = regions.get("correction", {}).get("text") or []
    severity = (regions.get("severity", {}).get("choices") or [None])[0]
    return {"label": verdict, "correction": "\n".join(text).strip() or None,
            "issues": list(regions.get("issues", {}).get("choices") or []),
            "severity": None if severity is None else int(severity)}


def pairwise_config() -> str:
    """Two responses to one prompt, one to prefer, or a tie."""
    return (
        '<View>'
        '<Header value="Prompt"/><Text name="prompt" value="$prompt"/>'
        '<Pairwise name="preference" toName="left,right" selectionStyle="background-color: #eef5ff"/>'
        '<Text name="left" value="$left"/><Text name="right" value="$right"/>'
        '<Choices name="tie" toName="prompt" choice="single" showInline="true">'
        '<Choice value="the two are equally good"/></Choices>'
        '</View>'
    )


def pairwise_data(item_id: str, payload: Mapping[str, Any], *, a_on_left: bool) -> dict[str, Any]:
    """Task data with response a on the left or the right, as drawn for this task (kept as ``left_is``)."""
    left, right = (payload["response_a"], payload["response_b"]) if a_on_left else (payload["response_b"],
                                                                                       payload["response_a"])
    return {"item_id": item_id, "prompt": _prompt_text(payload["prompt"]), "left": left, "right": right,
            "left_is": "a" if a_on_left else "b"}


def pairwise_answer(result: Sequence[Mapping[str, Any]], *, left_is: str) -> dict[str, Any]:
    """``{"label": "a"|"b"|"tie"|None, "side": "left"|"right"|None}``: the preferred response, whatever side."""
    if left_is not in ("a", "b"):
        raise ValueError(f"left_is must be 'a' or 'b', got {left_is!r}")
    regions = _by_name(result)
    if regions.get("tie", {}).get("choices"):
        return {"label": "tie", "side": None}
    side = regions.get("preference", {}).get("selected")
    if side not in ("left", "right"):
        return {"label": None, "side": None}
    right_is = "b" if left_is == "a" else "a"
    return {"label": left_is if side == "left" else right_is, "side": side}


def _field_name(field: str) -> str:
    return "field_" + "".join(c if c.isalnum() else "_" for c in field)


def extraction_config(fields: Mapping[str, float] | Sequence[str]) -> str:
    """The document and one text area per field, named ``field_<name>``, to confirm or correct its value."""
    names = list(fields)
    _names(names, "field names")
    if len({_field_name(name) for name in names}) != len(names):
        raise ValueError(f"field names must stay distinct once reduced to letters, digits and _: {names!r}")
    areas = "".join(
        f'<Header value={quoteattr(f"{name}: confirm or correct the extracted value")}/>'
        f'<TextArea name="{_field_name(name)}" toName="text" editable="true" maxSubmissions="1" rows="1"/>'
        for name in names)
    return (f'<View><Text name="text" value="$text"/><Header value="Extracted (value, confidence)"/>'
            f'<Text name="extracted" value="$extracted"/>{areas}</View>')


def extraction_data(item_id: str, text: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    fields = payload["fields"]
    return {"item_id": item_id, "text": text,
            "extracted": "; ".join(f"{n} = {f['value']} ({f['confidence']:.2f})" for n, f in fields.items())}


def extraction_answer(result: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, str]:
    """The value people gave each field they answered (an unanswered field is left out)."""
    regions = _by_name(result)
    answers = {}
    for name in fields:
        text = regions.get(_field_name(name), {}).get("text") or []
        if text:
            answers[name] = "\n".join(text).strip()
    return answers
