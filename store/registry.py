"""Model versions: registering, promoting and rejecting them, and which one routes now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from store.bulk import insert_ignore
from store.models import Item, ItemState, ItemStateRow, ModelVersion, Prediction, utcnow
from store.passthrough import UPSTREAM_MODEL
from store.predictions import upstream_predicted
from store.vocab import FAMILY_ITEM_KIND, ModelFamily, ModelStatus

__all__ = [
    "model_artifacts", "model_for_data", "model_row", "model_versions", "ModelArtifact",
    "predicted_model_versions", "promote_model", "promoted_family_model", "promoted_family_versions",
    "promoted_model", "promoted_version", "promoted_versions", "register_model", "reject_model",
]


_FAMILY_KINDS = sorted(family.value for family in ModelFamily)


def _newest_promoted(engine: Engine, in_family: Any) -> ModelVersion | None:
    query = (
        select(ModelVersion)
        .where(ModelVersion.status == ModelStatus.PROMOTED, in_family)
        .order_by(ModelVersion.promoted_at.desc(), ModelVersion.version.desc())
        .limit(1)
    )
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(query).first()


def promoted_model(engine: Engine) -> ModelVersion | None:
    """The most recently promoted classifier (the model of classification items), or None while none is; the
    models of outputs of LLM pipelines are `promoted_family_model`'s."""
    return _newest_promoted(engine, ModelVersion.kind.not_in(_FAMILY_KINDS))


def promoted_family_model(engine: Engine, family: ModelFamily | str) -> ModelVersion | None:
    """The most recently promoted model of `family` (``store.vocab.ModelFamily``), or None while none is."""
    return _newest_promoted(engine, ModelVersion.kind == ModelFamily(family).value)


def promoted_family_versions(engine: Engine) -> dict[str, str]:
    """Per item kind whose family has a promoted model (generation, pairwise): that model's version, which scores
    and routes the items of the kind that arrive without a score of their pipeline's own."""
    found = {FAMILY_ITEM_KIND[family].value: promoted_family_model(engine, family) for family in ModelFamily}
    return {kind: model.version for kind, model in found.items() if model is not None}


def promoted_version(engine: Engine) -> str:
    """The version that routes now: the promoted model's, else the upstream passthrough's."""
    model = promoted_model(engine)
    return UPSTREAM_MODEL if model is None else model.version


def model_versions(engine: Engine) -> list[ModelVersion]:
    """Every registered model version, oldest first."""
    query = select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.version)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query).all())


def promoted_versions(engine: Engine) -> list[str]:
    """The versions of every model marked promoted (normally one)."""
    with engine.connect() as conn:
        return list(conn.execute(select(ModelVersion.version).where(ModelVersion.status == ModelStatus.PROMOTED))
                    .scalars())


def predicted_model_versions(engine: Engine) -> set[str]:
    """Every model version that has scored some item (the upstream passthrough when an item past ``received``
    holds its prediction: ``store.predictions``)."""
    with engine.connect() as conn:
        versions = set(conn.execute(select(Prediction.model_version).distinct()).scalars())
        if conn.execute(select(Item.id).join(ItemStateRow, ItemStateRow.item_id == Item.id)
                        .where(upstream_predicted(), ItemStateRow.state != ItemState.received)
                        .limit(1)).first() is not None:
            versions.add(UPSTREAM_MODEL)
    return versions


def model_row(engine: Engine, version: str) -> ModelVersion | None:
    """The registry row of one model version."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(ModelVersion, version)


def model_for_data(engine: Engine, data_hash: str) -> str | None:
    """The version of a model already trained on the training set fingerprinted `data_hash`, if any."""
    with engine.connect() as conn:
        return conn.execute(select(ModelVersion.version).where(ModelVersion.data_hash == data_hash)).scalar()


class ModelArtifact(NamedTuple):
    version: str
    artifact_path: str
    sha256: str


def model_artifacts(engine: Engine) -> list[ModelArtifact]:
    """Every registered model version that has an artifact file, oldest first."""
    query = (select(ModelVersion.version, ModelVersion.artifact_path, ModelVersion.sha256)
             .where(ModelVersion.artifact_path.is_not(None), ModelVersion.sha256.is_not(None))
             .order_by(ModelVersion.created_at, ModelVersion.version))
    with engine.connect() as conn:
        rows: Iterable[Any] = conn.execute(query)  # the path and hash are not null, by the query
        return [ModelArtifact(*row) for row in rows]


def register_model(engine: Engine, row: dict[str, Any]) -> None:
    """Record a saved model version (as a candidate, unless `row` says otherwise); a known version is left as is."""
    with engine.begin() as conn:
        insert_ignore(conn, ModelVersion.__table__, [{"status": ModelStatus.CANDIDATE, **row}])


def promote_model(engine: Engine, version: str) -> None:
    """Make `version` the promoted model of its family; any other promoted one of the family retires (a verifier's
    promotion leaves the classifier and the preference model as they are)."""
    with engine.begin() as conn:
        kind = conn.execute(select(ModelVersion.kind).where(ModelVersion.version == version)).scalar()
        if kind is None:
            raise ValueError(f"no registered model version {version!r} to promote")
        same_family = (ModelVersion.kind == kind) if kind in _FAMILY_KINDS else ModelVersion.kind.not_in(_FAMILY_KINDS)
        conn.execute(update(ModelVersion)
                     .where(ModelVersion.status == ModelStatus.PROMOTED, ModelVersion.version != version, same_family)
                     .values(status=ModelStatus.RETIRED))
        conn.execute(update(ModelVersion).where(ModelVersion.version == version)
                     .values(status=ModelStatus.PROMOTED, promoted_at=utcnow()))


def reject_model(engine: Engine, version: str) -> None:
    """Mark a candidate that the retrain gate found worse than the incumbent."""
    with engine.begin() as conn:
        conn.execute(update(ModelVersion).where(ModelVersion.version == version).values(status=ModelStatus.REJECTED))
