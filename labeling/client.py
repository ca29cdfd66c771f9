"""Talk to Label Studio's API: review projects, task push with pre-annotations, annotation pull; the only SDK user.

Every API call goes through `LabelStudioQueue._call`, which retries connection errors, timeouts and 5xx/429
answers with exponential backoff and turns what is left into the `labeling.errors` tree. Pushing tasks is made
safe to retry: before a chunk is re-sent, the queue asks the server which of its items already arrived (by the
`batch_key` each task carries in its data) and sends only the rest.

Mapping between Sluice and Label Studio:

* a Sluice item travels as a task whose `data` is {"text", "item_id", "batch_key", "priority", "selection_reason"};
* a model prediction travels as a Label Studio prediction (pre-annotation) with `model_version` and `score`
  (the model's confidence: "Uncertainty sampling" serves the lowest score first);
* a human label comes back as a `PulledAnnotation` keyed by Label Studio's annotation id.
"""

from __future__ import annotations

import json
import logging
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from xml.sax.saxutils import quoteattr

import httpx
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.request_options import RequestOptions
from label_studio_sdk.types import ImportApiRequest

from labeling.errors import (
    LabelStudioApiError,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioUnavailable,
)
from labeling.queue import QUEUE_MODEL_VERSION
from store.settings import SluiceSettings, masked_service_url

__all__ = [
    "FROM_NAME",
    "AnswerReader",
    "SAMPLING",
    "TO_NAME",
    "LabelStudioQueue",
    "PulledAnnotation",
    "TaskSpec",
    "choice_result",
    "datetime_filter_value",
    "labeling_config",
    "parse_annotation",
    "task_payload",
]

FROM_NAME = "label"
TO_NAME = "text"
SAMPLING = "Uncertainty sampling"
PAGE_SIZE = 500
DATETIME_FILTER_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # anything else makes the Data Manager answer HTTP 500
_RETRYABLE_STATUS = frozenset({408, 429})

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TaskSpec:
    """One item to put in front of annotators, with why it was chosen and the model's suggestion if shown."""

    item_id: str
    text: str
    batch_key: str
    priority: float
    selection_reason: str
    model_version: str | None = None
    predicted_label: str | None = None
    score: float | None = None
    data: Mapping[str, Any] | None = None  # an LLM kind's task data (`labeling.kinds`), beside Sluice's own keys
    suggestion: Sequence[Mapping[str, Any]] | None = None  # its pre-annotation result, when not the `label` choice
    # the task's place in Sluice's order (`labeling.queue.queue_score`): when set, the task carries one prediction
    # under `QUEUE_MODEL_VERSION` with this score, holding the suggestion (or nothing, on a blind task)
    queue_score: float | None = None
    note: str = ""  # what the panel says above the item: why it is here, calibrated confidence, risk codes

    def __post_init__(self) -> None:
        if not self.item_id:
            raise ValueError("TaskSpec.item_id must be a non-empty string")
        if not self.batch_key:
            raise ValueError(f"TaskSpec.batch_key must be a non-empty string (item {self.item_id!r})")
        if not math.isfinite(self.priority):
            raise ValueError(
                f"TaskSpec.priority must be finite, got {self.priority!r} (item {self.item_id!r})"
            )
        if self.predicted_label is not None and not self.model_version:
            raise ValueError(f"TaskSpec {self.item_id!r} has predicted_label but no model_version")
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"TaskSpec.score must be finite, got {self.score!r} (item {self.item_id!r})")
        if self.queue_score is not None and not math.isfinite(self.queue_score):
            raise ValueError(f"TaskSpec.queue_score must be finite, got {self.queue_score!r} (item {self.item_id!r})")


@dataclass(frozen=True)
class PulledAnnotation:
    """A human answer read back from Label Studio; `label` is None for a cancelled (skipped) annotation."""

    annotation_id: int
    task_id: int
    item_id: str
    label: str | None
    annotator: str
    was_cancelled: bool
    created_at: datetime
    updated_at: datetime
    answer: dict[str, Any] | None = None  # what an LLM kind's answer holds beyond its label (`labeling.kinds`)


#: How the answer of an annotation is read from its task's data and its result: (label, answer beyond it).
AnswerReader = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]]], tuple[str | None, dict[str, Any] | None]]


# ---------------------------------------------------------------------- pure mapping (no network)


def labeling_config(labels: Sequence[str]) -> str:
    """The project's labeling config: the item text and one single-choice question with one Choice per label."""
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of label strings, not one string")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if not labels or bad:
        raise ValueError(f"labels must be non-empty strings, got {list(labels)!r}")
    duplicates = sorted({label for label in labels if list(labels).count(label) > 1})
    if duplicates:
        raise ValueError(f"labels must be unique, duplicated: {duplicates!r}")
    choices = "".join(f"<Choice value={quoteattr(label)}/>" for label in labels)
    return (
        f'<View><Text name="note" value="$note"/><Text name="{TO_NAME}" value="$text"/>'
        f'<Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">{choices}</Choices></View>'
    )


def config_labels(config: str) -> list[str]:
    """The Choice values of the `label` question in a labeling config (inverse of `labeling_config`)."""
    root = ET.fromstring(config)
    for choices in root.iter("Choices"):
        if choices.get("name") == FROM_NAME:
            return [choice.get("value", "") for choice in choices.iter("Choice")]
    return []


def choice_result(label: str) -> list[dict[str, Any]]:
    """A Label Studio `result` choosing `label`, used for predictions and annotations alike."""
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}]


def task_payload(spec: TaskSpec) -> dict[str, Any]:
    """The import payload of one task: our ids in `data`, the model's suggestion as a prediction."""
    payload: dict[str, Any] = {
        "data": {
            "text": spec.text,
            **(spec.data or {}),
            "item_id": spec.item_id,
            "batch_key": spec.batch_key,
            "priority": spec.priority,
            "selection_reason": spec.selection_reason,
            "note": spec.note,
        }
    }
    if spec.queue_score is not None:
        shown: list[Any] = []
        if spec.predicted_label is not None:
            shown = list(spec.suggestion) if spec.suggestion is not None else choice_result(spec.predicted_label)
        payload["data"]["model_version"] = spec.model_version
        payload["predictions"] = [{"model_version": QUEUE_MODEL_VERSION, "score": spec.queue_score, "result": shown}]
    elif spec.predicted_label is not None:
        prediction: dict[str, Any] = {
            "model_version": spec.model_version,
            "result": list(spec.suggestion) if spec.suggestion is not None else choice_result(spec.predicted_label),
        }
        if spec.score is not None:
            prediction["score"] = spec.score
        payload["predictions"] = [prediction]
    return payload


def datetime_filter_value(moment: datetime) -> str:
    """A Data Manager Datetime filter value (UTC, microseconds, trailing Z); naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).strftime(DATETIME_FILTER_FORMAT)


def parse_annotation(task: Mapping[str, Any], annotation: Mapping[str, Any], *,
                     read: AnswerReader | None = None) -> PulledAnnotation:
    """Map one annotation dict of a `tasks.list(fields="all")` task to a `PulledAnnotation`; `read` reads the
    answer of a project of an LLM kind (the `label` choice when None)."""
    was_cancelled = bool(annotation.get("was_cancelled"))
    label, answer = None, None
    if not was_cancelled:
        result = annotation.get("result") or []
        label, answer = read(task.get("data") or {}, result) if read is not None else (_chosen_label(result), None)
    return PulledAnnotation(
        annotation_id=int(annotation["id"]),
        task_id=int(task["id"]),
        item_id=str(task["data"]["item_id"]),
        label=label,
        answer=answer,
        annotator=_annotator(annotation.get("completed_by")),
        was_cancelled=was_cancelled,
        created_at=_parse_datetime(annotation["created_at"]),
        updated_at=_parse_datetime(annotation.get("updated_at") or annotation["created_at"]),
    )


def _chosen_label(result: Sequence[Mapping[str, Any]]) -> str | None:
    for region in result:
        if region.get("from_name") == FROM_NAME and region.get("type") == "choices":
            chosen = (region.get("value") or {}).get("choices") or []
            return str(chosen[0]) if chosen else None
    return None


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("id", completed_by.get("email"))
    return "" if completed_by is None else str(completed_by)


def _parse_datetime(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _filter_query(*items: dict[str, Any], conjunction: str = "and") -> str:
    return json.dumps(
        {"filters": {"conjunction": conjunction, "items": list(items)}, "ordering": ["tasks:id"]}
    )


def _as_dict(obj: Any) -> dict[str, Any]:
    """`tasks.list` items are pydantic models holding dict annotations; normalise to plain dicts."""
    if isinstance(obj, Mapping):
        return dict(obj)
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else dict(obj)


# ---------------------------------------------------------------------- the API client


class LabelStudioQueue:
    """A Label Studio server seen as Sluice's review queue; every call is retried on transient failures."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 60.0, retries: int = 4, backoff: float = 0.5
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ValueError(f"retries and backoff must be >= 0, got retries={retries}, backoff={backoff}")
        self.url = url.rstrip("/")
        self.shown_url = masked_service_url(self.url)  # what messages say: no credential
        self.retries = retries
        self.backoff = backoff
        self._sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout)
        # our retry loop is the only one: the SDK's own retries would multiply attempts and hide errors
        self._request_options: RequestOptions = {"max_retries": 0}

    @classmethod
    def from_settings(cls, settings: SluiceSettings, **options: Any) -> LabelStudioQueue:
        """The queue at `settings.resolved_labelstudio_url` (the local server unless a URL is configured)."""
        return cls(settings.resolved_labelstudio_url, settings.labelstudio_credentials().token, **options)

    # ------------------------------------------------------------------ projects

    def ensure_project(self, title: str, labels: Sequence[str] | None = None, *, config: str | None = None,
                       instructions: str | None = None) -> int:
        """The id of the project called exactly `title`, created with a generated config if absent: one question
        over `labels`, or the given `config` (a queue of an LLM kind, `labeling.kinds`), which an existing
        project is brought up to (an extraction queue grows a text area per new field). `instructions` (HTML)
        are shown to annotators before they start, and kept up to date."""
        if len(title.strip()) < 3:
            raise ValueError(f"project title must have at least 3 characters, got {title!r}")
        if (labels is None) == (config is None):
            raise ValueError("give the project's labels or its config, not both")
        existing = self._find_project(title)
        if config is None:
            assert labels is not None
            config = labeling_config(labels)
            if existing is not None and config_labels(existing[1]) != list(labels):
                raise LabelStudioError(
                    f"Label Studio project {title!r} (id {existing[0]}) exists with labels "
                    f"{config_labels(existing[1])!r}, not {list(labels)!r}"
                )
            update_config = False  # a classification project keeps the config it was made with
        else:
            update_config = existing is not None and existing[1] != config
        if existing is None:
            return self._create_project(title, config, instructions)
        project_id, _, shown = existing
        changes: dict[str, Any] = {}
        if update_config:
            changes["label_config"] = config
        if instructions is not None and shown != instructions:
            changes.update(expert_instruction=instructions, show_instruction=True)
        if changes:
            self._call(f"update project {project_id}", self._sdk.projects.update, project_id, **changes)
        return project_id

    def _create_project(self, title: str, config: str, instructions: str | None = None) -> int:
        extra: dict[str, Any] = {} if instructions is None else {"expert_instruction": instructions,
                                                                  "show_instruction": True}
        project = self._call(
            f"create project {title!r}",
            self._sdk.projects.create,
            title=title,
            label_config=config,
            sampling=SAMPLING,
            **extra,
        )
        return _required_id(project, "created project")

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make uncertainty sampling follow `model_version`'s predictions (LS never updates it by itself)."""
        self._call(
            f"set model_version of project {project_id}",
            self._sdk.projects.update,
            project_id,
            model_version=model_version,
        )

    def _find_project(self, title: str) -> tuple[int, str, str] | None:
        matches: list[tuple[int, str, str]] = []
        for page in self._pages(f"list projects titled {title!r}", self._sdk.projects.list, title=title):
            for project in page:
                if project.title == title:
                    matches.append((int(project.id), project.label_config or "",
                                    getattr(project, "expert_instruction", None) or ""))
        return min(matches) if matches else None

    # ------------------------------------------------------------------ tasks

    def import_tasks(self, project_id: int, tasks: Sequence[TaskSpec], *, chunk_size: int = 500) -> list[int]:
        """Create one task per spec (predictions attached) and return their task ids in the order given."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        item_ids = [spec.item_id for spec in tasks]
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("import_tasks got the same item_id twice in one call")
        task_ids: list[int] = []
        for start in range(0, len(tasks), chunk_size):
            task_ids.extend(self._import_chunk(project_id, tasks[start : start + chunk_size]))
        return task_ids

    def _import_chunk(self, project_id: int, chunk: Sequence[TaskSpec]) -> list[int]:
        arrived: dict[str, int] = {}

        def push() -> list[int]:
            missing = [spec for spec in chunk if spec.item_id not in arrived]
            if missing:
                response = self._sdk.projects.import_tasks(
                    project_id,
                    request=[cast(ImportApiRequest, task_payload(spec)) for spec in missing],
                    return_task_ids=True,
                    request_options=self._request_options,
                )
                new_ids = _task_ids(response)
                if len(new_ids) != len(missing):
                    raise LabelStudioApiError(
                        f"import into project {project_id} returned {len(new_ids)} task ids for {len(missing)} tasks"
                    )
                arrived.update(zip((spec.item_id for spec in missing), new_ids, strict=True))
            return [arrived[spec.item_id] for spec in chunk]

        def reconcile(failure: Exception | None) -> None:
            # a timed-out or 5xx import may still have been committed: never create a task twice
            if isinstance(failure, httpx.ConnectError):
                return  # the request never reached the server
            for batch_key in dict.fromkeys(spec.batch_key for spec in chunk):
                found = self.tasks_for_batch(project_id, batch_key)
                arrived.update({spec.item_id: found[spec.item_id] for spec in chunk if spec.item_id in found})

        return self._call(
            f"import {len(chunk)} tasks into project {project_id}",
            push,
            before_retry=reconcile,
            sdk_call=False,
        )

    def tasks_for_batch(self, project_id: int, batch_key: str) -> dict[str, int]:
        """item_id -> task id of the tasks whose data.batch_key is `batch_key` (the lowest id if pushed twice)."""
        query = _filter_query(
            {
                "filter": "filter:tasks:data.batch_key",
                "operator": "equal",
                "type": "String",
                "value": batch_key,
            }
        )
        found: dict[str, int] = {}
        for task in self._tasks(project_id, query=query, fields="task_only"):
            item_id = str(task["data"].get("item_id"))
            if task["data"].get("batch_key") == batch_key:  # guard against a looser server-side match
                found.setdefault(item_id, int(task["id"]))
        return found

    def item_ids_of_tasks(self, project_id: int, task_ids: Sequence[int]) -> dict[int, str]:
        """task id -> item_id for the given tasks of a project (ids not in the project are absent)."""
        return {task_id: str(data.get("item_id")) for task_id, data in self.task_data(project_id, task_ids).items()}

    def task_data(self, project_id: int, task_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """task id -> the task's data for the given tasks of a project (ids not in the project are absent)."""
        found: dict[int, dict[str, Any]] = {}
        unique_ids = list(dict.fromkeys(int(task_id) for task_id in task_ids))
        for start in range(0, len(unique_ids), PAGE_SIZE):
            selected = {"all": False, "included": unique_ids[start : start + PAGE_SIZE]}
            query = json.dumps({"selectedItems": selected, "ordering": ["tasks:id"]})
            for task in self._tasks(project_id, query=query, fields="task_only"):
                found[int(task["id"])] = dict(task["data"])
        return found

    def next_task(self, project_id: int) -> int | None:
        """The task Label Studio's label stream serves next to the token's user (locks it), or None if none left."""

        def request() -> int | None:
            response = self._sdk._client_wrapper.httpx_client.request(  # the SDK has no method for /next
                f"api/projects/{project_id}/next", method="GET", request_options=self._request_options
            )
            if response.status_code == 404:
                return None
            if response.status_code >= 400:
                raise ApiError(
                    status_code=response.status_code, headers=dict(response.headers), body=response.text
                )
            return int(response.json()["id"])

        return self._call(f"next task of project {project_id}", request, sdk_call=False)

    # ------------------------------------------------------------------ annotations

    def pull_annotations(self, project_id: int, *, since: datetime | None) -> list[PulledAnnotation]:
        """Annotations created or changed after `since` (all when None), ordered by task id then annotation id.

        Tasks are selected on the server by `updated_at > since` (Label Studio bumps a task's updated_at whenever
        one of its annotations is saved); annotations not updated after `since` are then left out, so passing
        the largest `updated_at` seen so far returns nothing new. Results are keyed by `annotation_id`: callers
        upsert them, and may pass a `since` slightly in the past to tolerate concurrent writers.
        """
        pulled = [a for page in self.annotation_pages(project_id, since=since) for a in page]
        return sorted(pulled, key=lambda item: (item.task_id, item.annotation_id))

    def annotation_pages(self, project_id: int, *, since: datetime | None,
                         read: AnswerReader | None = None) -> Iterator[list[PulledAnnotation]]:
        """`pull_annotations` one page of tasks at a time (every annotation of a task is in the same page), so
        that a caller can store each page before asking for the next; `read` reads an LLM kind's answers."""
        if since is None:
            # cancelled (skipped) annotations are counted apart from total_annotations
            query = _filter_query(
                {
                    "filter": "filter:tasks:total_annotations",
                    "operator": "greater",
                    "type": "Number",
                    "value": 0,
                },
                {
                    "filter": "filter:tasks:cancelled_annotations",
                    "operator": "greater",
                    "type": "Number",
                    "value": 0,
                },
                conjunction="or",
            )
        else:
            query = _filter_query(
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": datetime_filter_value(since),
                }
            )
        what = f"list tasks of project {project_id}"
        for page in self._pages(what, self._sdk.tasks.list, project=project_id, query=query, fields="all"):
            pulled: list[PulledAnnotation] = []
            for task in (_as_dict(t) for t in page):
                if "item_id" not in (task.get("data") or {}):
                    # a task someone created by hand in Label Studio: it maps to no Sluice item
                    log.warning(
                        "project %s task %s has no data.item_id; its annotations are not pulled",
                        project_id,
                        task["id"],
                    )
                    continue
                for annotation in task.get("annotations") or []:
                    item = parse_annotation(task, _as_dict(annotation), read=read)
                    if since is None or item.updated_at > since:
                        pulled.append(item)
            yield pulled

    def set_overlap(self, task_id: int, annotators: int) -> None:
        """Ask Label Studio for `annotators` distinct annotators on one task: its label stream keeps serving the
        task until that many have answered (the task's `overlap`; the project's own overlap stays 1)."""
        if annotators < 1:
            raise ValueError(f"annotators must be >= 1, got {annotators}")
        self._call(f"set overlap of task {task_id}", self._sdk.tasks.update, str(task_id), overlap=annotators)

    def ensure_webhook(self, project_id: int, url: str, *, token: str | None = None) -> int:
        """Register the project's webhook to `url`, sent after annotation changes with `X-Sluice-Token: token`
        when a token is given; a webhook registered before to the same url is replaced (its token may be stale).
        Returns the webhook's id."""
        from labeling.webhook import CHANGE_ACTIONS, TOKEN_HEADER

        existing = self._call(f"list webhooks of project {project_id}", self._sdk.webhooks.list,
                              project=str(project_id))
        for old in existing or []:
            if old.url == url and old.project == project_id and old.id is not None:
                self._call(f"delete webhook {old.id}", self._sdk.webhooks.delete, int(old.id))
        hook = self._call(
            f"create webhook {url!r}", self._sdk.webhooks.create, url=url, project=project_id,
            actions=sorted(CHANGE_ACTIONS), send_payload=True, send_for_all_actions=False, is_active=True,
            headers={TOKEN_HEADER: token} if token else {},
        )
        return _required_id(hook, "created webhook")

    def task_overlap(self, task_id: int) -> int:
        """The number of annotators Label Studio wants on a task."""
        return int(_as_dict(self._call(f"get task {task_id}", self._sdk.tasks.get, str(task_id)))["overlap"])

    def ensure_annotator(self, email: str, password: str) -> int:
        """The user id of the annotator with this email, created (username = email) if absent."""
        existing = self._find_user(email)
        if existing is not None:
            return existing
        try:
            user = self._call(
                f"create user {email!r}",
                self._sdk.users.create,
                username=email,
                email=email,
                password=password,
            )
        except LabelStudioApiError:
            existing = self._find_user(email)  # created concurrently (or by a retried request)
            if existing is None:
                raise
            return existing
        return _required_id(user, "created user")

    def _find_user(self, email: str) -> int | None:
        users = self._call("list users", self._sdk.users.list)
        wanted = email.casefold()
        return next(
            (
                int(user.id)
                for user in users
                if user.id is not None and (user.email or "").casefold() == wanted
            ),
            None,
        )

    def annotate(self, task_id: int, label: str | None, *, annotator_id: int, lead_time: float | None = None,
                 result: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Record `annotator_id`'s answer for a task through the API: the choice `label`, or a whole `result` (an
        LLM kind's answer, `labeling.kinds`); returns the annotation id."""
        if (label is None) == (result is None):
            raise ValueError("give the answer's label or its result, not both")
        options: dict[str, Any] = {} if lead_time is None else {"lead_time": lead_time}
        annotation = self._call(
            f"annotate task {task_id}",
            self._sdk.annotations.create,
            task_id,
            result=list(result) if result is not None else choice_result(label or ""),
            completed_by=annotator_id,
            **options,
        )
        return _required_id(annotation, "created annotation")

    def skip(self, task_id: int, *, annotator_id: int) -> int:
        """Record that `annotator_id` skipped (cancelled) a task; pulls return it with `was_cancelled=True`."""
        options: RequestOptions = {
            **self._request_options,
            "additional_body_parameters": {"was_cancelled": True},
        }
        annotation = self._call(
            f"skip task {task_id}",
            self._sdk.annotations.create,
            task_id,
            result=[],
            completed_by=annotator_id,
            request_options=options,
            sdk_call=False,
        )
        return _required_id(annotation, "skipped annotation")

    def update_annotation(self, annotation_id: int, label: str) -> None:
        """Change the chosen label of an existing annotation (a reviewer's correction)."""
        self._call(
            f"update annotation {annotation_id}",
            self._sdk.annotations.update,
            annotation_id,
            result=choice_result(label),
        )

    # ------------------------------------------------------------------ plumbing

    def _tasks(self, project_id: int, *, query: str, fields: str) -> Iterator[dict[str, Any]]:
        what = f"list tasks of project {project_id}"
        for page in self._pages(what, self._sdk.tasks.list, project=project_id, query=query, fields=fields):
            yield from (_as_dict(task) for task in page)

    def _pages(self, what: str, list_call: Callable[..., Any], **kwargs: Any) -> Iterator[list[Any]]:
        """Page through a list endpoint one retried request at a time (the SDK pager would not retry)."""
        page_number = 1
        while True:
            pager = self._call(
                f"{what} (page {page_number})", list_call, page=page_number, page_size=PAGE_SIZE, **kwargs
            )
            items = list(pager.items or [])
            yield items
            total = getattr(pager.response, "total", None)
            seen = (page_number - 1) * PAGE_SIZE + len(items)
            if len(items) < PAGE_SIZE or (total is not None and seen >= total):
                return
            page_number += 1

    def _call(
        self,
        what: str,
        func: Callable[..., T],
        *args: Any,
        before_retry: Callable[[Exception | None], None] | None = None,
        sdk_call: bool = True,
        **kwargs: Any,
    ) -> T:
        """Run one API call with retries on transport errors, 5xx, 408 and 429; map the rest to our errors."""
        if sdk_call:
            kwargs["request_options"] = self._request_options
        failure: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if attempt and before_retry is not None:
                    before_retry(failure)
                return func(*args, **kwargs)
            except (httpx.TransportError, LabelStudioUnavailable) as exc:
                failure = exc
            except ApiError as exc:
                status = exc.status_code or 0
                if status >= 500 or status in _RETRYABLE_STATUS:
                    failure = exc
                    continue
                if status in (401, 403):
                    raise LabelStudioAuthError(
                        f"{what}: Label Studio at {self.shown_url} refused the token (HTTP {status})"
                    ) from exc
                raise LabelStudioApiError(
                    f"{what}: HTTP {status}: {_short(exc.body)}", status_code=status
                ) from exc
        raise LabelStudioUnavailable(
            f"{what}: Label Studio at {self.shown_url} unavailable after {self.retries + 1} attempts: {_describe(failure)}"
        ) from failure


def _required_id(obj: Any, what: str) -> int:
    identifier = getattr(obj, "id", None)
    if identifier is None:
        raise LabelStudioApiError(f"Label Studio's answer for the {what} has no id: {obj!r}")
    return int(identifier)


def _task_ids(response: Any) -> list[int]:
    ids = getattr(response, "task_ids", None)
    if ids is None and hasattr(response, "model_extra"):
        ids = (response.model_extra or {}).get("task_ids")
    if ids is None:
        raise LabelStudioApiError(
            "Label Studio's import answer has no task_ids (return_task_ids was ignored)"
        )
    return [int(task_id) for task_id in ids]


def _describe(failure: Exception | None) -> str:
    if isinstance(failure, ApiError):
        return f"HTTP {failure.status_code}: {_short(failure.body)}"
    return f"{type(failure).__name__}: {failure}"


def _short(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
