"""What the score step reads and writes: the items each model still has to score, their inputs, and the
predictions written with the items' move to ``scored`` in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, bindparam, exists, func, or_, select

from store.bulk import LOOKUP_CHUNK, chunked, insert_ignore_columns
from store.db import write_transaction
from store.models import Item, ItemState, ItemStateRow, Label, Prediction
from store.predictions import upstream_predicted
from store.transitions import move_items
from store.vocab import FAMILY_ITEM_KIND, ItemKind, ModelFamily, Split

__all__ = ["RESCORED_STATES", "family_items_to_score", "item_inputs_of", "item_payloads", "items_to_score",
           "pass_through", "unscored_without_upstream", "write_predictions"]

RESCORED_STATES = (ItemState.received.value, ItemState.routed.value)


def _has_upstream() -> Any:
    return or_(Item.upstream_confidence.is_not(None), Item.upstream_probs.is_not(None))


def _held_out() -> Any:
    """Held-out labelled items are scored whatever their state: they calibrate and evaluate the model."""
    return exists().where(and_(Label.item_id == Item.id, Label.split == Split.HOLDOUT))


def _with_state(*columns: Any) -> Any:
    """A select of `columns` of items joined with their state rows (``ItemStateRow``)."""
    return select(*columns).join(ItemStateRow, ItemStateRow.item_id == Item.id)


def _lacks(version: str) -> Any:
    return ~exists().where(and_(Prediction.item_id == Item.id, Prediction.model_version == version))


def items_to_score(engine: Engine, model_version: str | None) -> tuple[list[str], list[str]]:
    """(ids for the promoted model, ids for the upstream passthrough) that still lack a prediction. An item born
    with its producer's scores holds its passthrough prediction in its row (``store.predictions``): the only
    passthrough left is moving items an earlier release left ``received`` to ``scored``. The classifier scores
    classification items only: outputs of LLM pipelines without a score are their family model's."""
    with engine.connect() as conn:
        upstream = conn.execute(
            _with_state(Item.id).where(ItemStateRow.state == ItemState.received.value, upstream_predicted())
        ).scalars().all()
        if model_version is None:
            return [], list(upstream)
        model = conn.execute(
            _with_state(Item.id).where(
                or_(and_(ItemStateRow.state.in_(RESCORED_STATES), ~_has_upstream()), _held_out()),
                _lacks(model_version),
                Item.kind == ItemKind.CLASSIFICATION,
            )
        ).scalars().all()
    return list(model), list(upstream)


def family_items_to_score(engine: Engine, family: ModelFamily, model_version: str) -> list[str]:
    """Ids of the items of the family's kind that `model_version` should score and has not: those without a score
    of their pipeline's own waiting to be routed (again, after a promotion), and every held-out labelled one (they
    calibrate and evaluate the model)."""
    with engine.connect() as conn:
        return list(conn.execute(
            _with_state(Item.id).where(Item.kind == FAMILY_ITEM_KIND[family], _lacks(model_version),
                                       or_(and_(ItemStateRow.state.in_(RESCORED_STATES), ~_has_upstream()),
                                           _held_out()))
            .order_by(Item.id)
        ).scalars())


def unscored_without_upstream(engine: Engine) -> int:
    """Items received without a score of their producer's: they wait for a promoted model."""
    with engine.connect() as conn:
        return int(conn.execute(
            _with_state(func.count()).select_from(Item).where(ItemStateRow.state == ItemState.received.value,
                                                              ~_has_upstream())
        ).scalar_one())


def item_inputs_of(engine: Engine, item_ids: Sequence[str], kind: str) -> tuple[list[str], list[Any]]:
    """The items among `item_ids` a model of `kind` can read (``text``, or ``features`` otherwise), in order, and
    their inputs."""
    column = Item.text if kind == "text" else Item.features
    query = select(Item.id, column).where(Item.id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as conn:
        found = {row[0]: row[1] for part in chunked(list(item_ids), LOOKUP_CHUNK)
                 for row in conn.execute(query, {"ids": list(part)})}
    usable = [i for i in item_ids if found.get(i) is not None]
    return usable, [found[i] for i in usable]


def item_payloads(engine: Engine, item_ids: Sequence[str]) -> dict[str, Any]:
    """The payload of each of the items found among `item_ids`."""
    query = select(Item.id, Item.payload).where(Item.id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as conn:
        return {row[0]: row[1] for part in chunked(list(item_ids), LOOKUP_CHUNK)
                for row in conn.execute(query, {"ids": list(part)})}


def pass_through(engine: Engine, item_ids: Sequence[str]) -> int:
    """Move the received items among `item_ids` that hold their passthrough prediction to ``scored``; how many
    moved."""
    query = select(Item.id).where(Item.id.in_(bindparam("ids", expanding=True)), upstream_predicted())
    with write_transaction(engine) as conn:
        ready = [item_id for part in chunked(list(item_ids), LOOKUP_CHUNK)
                 for item_id in conn.execute(query, {"ids": list(part)}).scalars()]
        moved = move_items(conn, dict.fromkeys(ready, ItemState.scored), by="score")
    return sum(moved.moved.values())


def write_predictions(engine: Engine, columns: dict[str, list[Any]]) -> None:
    """Prediction rows given column by column (``probs`` as JSON text), written with their items' move to
    `scored` (received or routed ones, ``store.transitions``) in one transaction."""
    if not columns["item_id"]:
        return
    with write_transaction(engine) as conn:
        insert_ignore_columns(conn, Prediction.__table__, columns, encoded_json=("probs",))
        move_items(conn, dict.fromkeys(columns["item_id"], ItemState.scored), by="score")
