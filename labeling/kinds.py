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

Every config shows the task's `note` above the item (why it was chosen, the calibrated confidence, risk codes:
`labeling.queue.task_note`); the task data of each kind always carries the key, which Label Studio requires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

__all__ = [
    "DEFAULT_ISSUES",
    "answer_result",
    "extraction_answer",
    "extraction_config",
    "extraction_data",
    "fields_to_review",
    "generation_answer",
    "generation_config",
    "generation_data",
    "pairwise_answer",
    "pairwise_config",
    "pairwise_data",
    "queue_config",
    "read_answer",
    "suggestion",
    "task_data",
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
        '<View><Text name="note" value="$note"/>'
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
            "context": _context_text(payload.get("context")), "note": ""}


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
        '<View><Text name="note" value="$note"/>'
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
            "left_is": "a" if a_on_left else "b", "note": ""}


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
    return (f'<View><Text name="note" value="$note"/><Text name="text" value="$text"/>'
            f'<Header value="Extracted (value, confidence)"/>'
            f'<Text name="extracted" value="$extracted"/>{areas}</View>')


def extraction_data(item_id: str, text: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    fields = payload["fields"]
    return {"item_id": item_id, "text": text, "note": "",
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


# ---------------------------------------------------------------------- one queue per kind: task in, answer out


def fields_to_review(fields: Mapping[str, Mapping[str, Any]], threshold: float | None) -> list[str]:
    """The fields of an extraction that need people, least confident first: the fewest whose review leaves the
    others' joint confidence (the product, the score the document was routed on) at or above `threshold`; every
    field when there is no threshold (nothing certified yet: people check the whole document)."""
    order = sorted(fields, key=lambda name: (float(fields[name]["confidence"]), name))
    if threshold is None:
        return order
    rest = math.prod(float(fields[name]["confidence"]) for name in order)
    needed = []
    for name in order:
        if rest >= threshold:
            break
        needed.append(name)
        rest /= max(float(fields[name]["confidence"]), 1e-12)
    return needed


def queue_config(kind: str, *, fields: Sequence[str] = (), issues: Sequence[str] = DEFAULT_ISSUES) -> str:
    """The labeling config of the queue of `kind` (an extraction queue: a text area for each of `fields`)."""
    if kind == "generation":
        return generation_config(issues)
    if kind == "pairwise":
        return pairwise_config()
    if kind == "extraction":
        return extraction_config(fields)
    raise ValueError(f"no queue of its own for kind {kind!r}")


def task_data(kind: str, item_id: str, text: str, payload: Mapping[str, Any], *, a_on_left: bool,
              threshold: float | None = None) -> dict[str, Any]:
    """The task data of an item of `kind` (an extraction's also names the fields that need people)."""
    if kind == "generation":
        return generation_data(item_id, payload)
    if kind == "pairwise":
        return pairwise_data(item_id, payload, a_on_left=a_on_left)
    if kind == "extraction":
        fields = payload["fields"]
        review = fields_to_review(fields, threshold)
        data = extraction_data(item_id, text, payload)
        data["extracted"] = "; ".join(
            f"{'[check] ' if name in review else ''}{name} = {field['value']} ({field['confidence']:.2f})"
            for name, field in sorted(fields.items(), key=lambda kv: (kv[1]["confidence"], kv[0])))
        return {**data, "values": {name: str(field["value"]) for name, field in fields.items()},
                "review_fields": review}
    raise ValueError(f"no queue of its own for kind {kind!r}")


def suggestion(kind: str, data: Mapping[str, Any], predicted_label: str) -> list[dict[str, Any]]:
    """The model's suggestion as a Label Studio pre-annotation of the queue of `kind`: the predicted verdict, the
    side of the predicted response, the extracted values to confirm or correct."""
    if kind == "generation":
        return [{"from_name": "verdict", "to_name": "response", "type": "choices",
                 "value": {"choices": [predicted_label]}}]
    if kind == "pairwise":
        if predicted_label not in ("a", "b"):
            return []
        side = "left" if data["left_is"] == predicted_label else "right"
        return [{"from_name": "preference", "to_name": "left,right", "type": "pairwise", "value": {"selected": side}}]
    if kind == "extraction":
        return [{"from_name": _field_name(name), "to_name": "text", "type": "textarea", "value": {"text": [value]}}
                for name, value in data["values"].items()]
    raise ValueError(f"no queue of its own for kind {kind!r}")


def read_answer(kind: str, data: Mapping[str, Any],
                result: Sequence[Mapping[str, Any]]) -> tuple[str | None, dict[str, Any] | None]:
    """(label, answer beyond it) of an annotation in the queue of `kind`: the verdict with the correction, issues
    and severity; the preferred response with the side it was shown on; ``corrected`` or ``confirmed`` with the
    fields as people left them. The label is None for a result that answers nothing."""
    if kind == "generation":
        answer = generation_answer(result)
        label = answer.pop("label")
        return label, answer
    if kind == "pairwise":
        left_is = str(data.get("left_is", "a"))
        answer = pairwise_answer(result, left_is=left_is)
        return answer["label"], {"side": answer["side"], "left_is": left_is}
    if kind == "extraction":
        values = dict(data.get("values") or {})
        answers = extraction_answer(result, list(values))
        if not answers:
            return None, None
        corrected = sorted(name for name, value in answers.items() if value != values.get(name))
        return ("corrected" if corrected else "confirmed"), {"fields": answers, "corrected": corrected,
                                                           "review_fields": list(data.get("review_fields") or [])}
    raise ValueError(f"no queue of its own for kind {kind!r}")


def answer_result(kind: str, data: Mapping[str, Any], answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Label Studio result an annotator's UI makes for `answer` (the form `read_answer` reads back): how the
    simulated annotators and the tests answer a queue through the API."""
    if kind == "generation":
        result = [{"from_name": "verdict", "to_name": "response", "type": "choices",
                   "value": {"choices": [answer["label"]]}}]
        if answer.get("correction"):
            result.append({"from_name": "correction", "to_name": "response", "type": "textarea",
                           "value": {"text": [answer["correction"]]}})
        if answer.get("issues"):
            result.append({"from_name": "issues", "to_name": "response", "type": "choices",
                           "value": {"choices": list(answer["issues"])}})
        if answer.get("severity") is not None:
            result.append({"from_name": "severity", "to_name": "response", "type": "choices",
                           "value": {"choices": [str(answer["severity"])]}})
        return result
    if kind == "pairwise":
        if answer["label"] == "tie":
            return [{"from_name": "tie", "to_name": "prompt", "type": "choices",
                     "value": {"choices": ["the two are equally good"]}}]
        side = "left" if data["left_is"] == answer["label"] else "right"
        return [{"from_name": "preference", "to_name": "left,right", "type": "pairwise", "value": {"selected": side}}]
    if kind == "extraction":
        return [{"from_name": _field_name(name), "to_name": "text", "type": "textarea", "value": {"text": [str(value)]}}
                for name, value in answer["fields"].items()]
    raise ValueError(f"no queue of its own for kind {kind!r}")
