"""Calibrate flow: per model version and segment, fit a recalibrator on unbiased held-out labels, gate it,
draw its reliability diagram, and watch the confidences of newer items for drift."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from calibration.display import ReliabilityDisplay
from calibration.drift import DEFAULT_MAX_PSI, confidence_drift
from calibration.report import CalibrationReport, calibration_gate, fit_and_select
from flows.common import (
    Payload,
    derive_rng,
    engine_for,
    holds_store_lock,
    settled,
    takes_payloads,
    utcnow,
)
from flows.runners import BATCH_RUNNER
from routing.policy import Policy
from routing.pools import POOL_PREFIX, groups_in_use, pool_members
from store.bulk import fingerprint
from store.calibrations import (
    calibration_report_for, recent_confidences, save_calibration_report, StoredCalibration,
    update_calibration_report,
)
from store.decisions import segments_seen
from store.labels import held_out_labels, HeldOut, selection_probabilities
from store.passthrough import UPSTREAM_MODEL
from store.policies import active_policy
from store.registry import predicted_model_versions, promoted_family_versions, promoted_model
from store.settings import SluiceSettings, settings_or_environment

# Keys added to CalibrationReportRow.report next to CalibrationReport.to_dict(); flows/route.py reads
# row.report["drift"]["stale"].
DRIFT_KEY = "drift"
DIAGRAM_KEY = "diagram"
MEMBERS_KEY = "members"  # the segments whose labels a pool's report was fitted on (the first 1,000)
CALIBRATION_BATCH = 200  # calibration groups per task: a segment must not cost a Prefect task of its own
Labelled = HeldOut  # item ids, raw confidence, correctness: one segment's unbiased held-out labels


def diagram_path(settings: SluiceSettings, model_version: str, segment: str, data_hash: str) -> Path:
    """`<home>/reports/calibration-<model>-<segment>-<hash>.png` of `settings`, names made file-system safe."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", part) for part in (model_version, segment, data_hash[:12])]
    return settings.reports_dir / f"calibration-{'-'.join(safe)}.png"


def draw_diagram(report: CalibrationReport, path: Path, *, title: str) -> str:
    ReliabilityDisplay(report.curve, title=title, ece=report.ece).save(path)
    return str(path)


def _refresh_existing(
    engine: Engine, settings: SluiceSettings, row: StoredCalibration, confidence: np.ndarray, *,
    model_version: str, segment: str, members: list[str], data_hash: str, max_psi: float,
) -> dict[str, Any]:
    """Re-measure drift of an unchanged report (writing only if it moved) and redraw a missing diagram."""
    recent = recent_confidences(engine, model_version, members, row.created_at)
    drift = confidence_drift(confidence, recent, max_psi=max_psi).to_dict()
    path = diagram_path(settings, model_version, segment, data_hash)
    if not path.exists():
        draw_diagram(CalibrationReport.from_dict(row.report), path, title=f"{model_version} / {segment}")
    report = {**row.report, DRIFT_KEY: drift, DIAGRAM_KEY: str(path)}
    if report != row.report:
        update_calibration_report(engine, row.id, report)
    return {"segment": segment, "model_version": model_version, "status": "unchanged", "id": row.id,
            "diagram": str(path), "drift": drift}


@dataclass(frozen=True)
class CalibrationJob:
    """One calibration group to fit: a segment on its own labels, or a pool on its members' labels."""

    segment: str
    members: list[str]
    item_ids: list[str]
    confidence: np.ndarray
    correct: np.ndarray


def calibration_jobs(policy: Policy, data: dict[str, Labelled], seen: Iterable[str] = ()) -> list[CalibrationJob]:
    """The groups routing will read: every labelled segment that stands on its own labels, and every pool that a
    small segment (labelled, or only `seen` among the items) falls back to, with its members' labels (see
    ``routing.pools``). A pool without labelled members has nothing to fit."""
    counts = {segment: len(held.item_ids) for segment, held in data.items()}
    groups = groups_in_use(policy, counts, set(data) | set(seen))
    jobs = [CalibrationJob(s, [s], data[s].item_ids, data[s].confidence, data[s].correct)
            for s in sorted(data) if groups[s] == s]
    members = pool_members(policy, data)
    for pool in sorted(p for p in set(groups.values()) - set(groups) if members.get(p)):
        parts = [data[m] for m in members.get(pool, [])]
        ids = [i for part in parts for i in part.item_ids]
        order = np.argsort(ids, kind="stable")
        jobs.append(CalibrationJob(pool, members.get(pool, []), [ids[k] for k in order],
                                   np.concatenate([p.confidence for p in parts])[order],
                                   np.concatenate([p.correct for p in parts])[order]))
    return jobs


def fit_segment(engine: Engine, settings: SluiceSettings, policy: Policy, model_version: str, job: CalibrationJob,
                max_psi: float = DEFAULT_MAX_PSI) -> dict[str, Any]:
    """Fit, gate, draw (into the settings' reports folder) and store one calibration group's report, or refresh
    the drift of an unchanged one."""
    segment, item_ids, confidence, correct = job.segment, job.item_ids, job.confidence, job.correct
    limits = policy.for_segment(job.members[0] if segment.startswith(POOL_PREFIX) and job.members
                                else segment).calibration
    data_hash = fingerprint([model_version, segment, item_ids, correct.tolist()])
    existing = calibration_report_for(engine, model_version, segment, data_hash)
    if existing is not None:
        return _refresh_existing(engine, settings, existing, confidence, model_version=model_version,
                                 segment=segment, members=job.members, data_hash=data_hash, max_psi=max_psi)
    calibrator, report = fit_and_select(confidence, correct, rng=derive_rng("calibrate", model_version, data_hash),
                                        sample_weight=inclusion_weights(engine, item_ids))
    gate = calibration_gate(report, min_samples=limits.min_samples, max_ece=limits.max_ece)
    diagram = draw_diagram(report, diagram_path(settings, model_version, segment, data_hash),
                           title=f"{model_version} / {segment}")
    drift = confidence_drift(confidence, [], max_psi=max_psi).to_dict()  # nothing scored after it yet
    row = {
        "model_version": model_version, "segment": segment, "data_hash": data_hash, "method": report.method,
        "n": report.n, "ece": report.ece, "ece_low": report.ece_low, "ece_high": report.ece_high,
        "mce": report.mce, "brier": report.brier, "passed": gate.passed, "reasons": list(gate.reasons),
        "calibrator": calibrator.to_dict(),
        "report": {**report.to_dict(), DRIFT_KEY: drift, DIAGRAM_KEY: diagram, MEMBERS_KEY: job.members[:1000]},
        "created_at": utcnow(),
    }
    save_calibration_report(engine, row)
    return {"segment": segment, "model_version": model_version, "status": "fitted", "method": report.method,
            "n": report.n, "ece": report.ece, "ece_high": report.ece_high, "passed": gate.passed,
            "reasons": list(gate.reasons), "diagram": diagram, "drift": drift}


@task(name="fit-calibrations", cache_policy=NO_CACHE)
@takes_payloads
def fit_batch(model_version: str, jobs: list[CalibrationJob], settings: SluiceSettings,
              max_psi: float = DEFAULT_MAX_PSI) -> list[dict[str, Any]]:
    """Fit a batch of calibration groups of one model (one task per batch, never one per segment)."""
    engine = engine_for(settings)
    policy, _ = active_policy(engine)
    return [fit_segment(engine, settings, policy, model_version, job, max_psi) for job in jobs]


def inclusion_weights(engine: Engine, item_ids: list[str]) -> np.ndarray:
    """1 / the probability with which each label was drawn (its `selection_probability`; 1 when unknown), so a
    calibration fit stands for the traffic the audits sample rather than for the mix of seed and audit labels."""
    found = selection_probabilities(engine, item_ids)
    probability = np.array([found.get(i) or 1.0 for i in item_ids], dtype=float)
    return 1.0 / np.clip(probability, 1e-6, 1.0)


def models_in_use(engine: Engine) -> list[str]:
    """The versions whose predictions route: the upstream passthrough (once it scored anything), the promoted
    classifier and the promoted model of each family of outputs of LLM pipelines (verifier, preference model)."""
    promoted = promoted_model(engine)
    keep = {UPSTREAM_MODEL} & predicted_model_versions(engine)
    if promoted is not None:
        keep.add(promoted.version)
    keep.update(promoted_family_versions(engine).values())
    return sorted(keep)


def _drift_cell(drift: dict[str, Any]) -> str:
    if drift.get("psi") is None:
        return f"n/a ({drift.get('n_actual', 0)} recent)"
    return f"{drift['psi']:.3f}{' **stale**' if drift.get('stale') else ''}"


ARTIFACT_ROWS, ARTIFACT_DIAGRAMS = 500, 50  # the artifact's size must not grow with the number of segments


def _markdown(results: list[dict[str, Any]]) -> str:
    """The calibration report as a Prefect artifact: failing and refitted groups first, at most `ARTIFACT_ROWS`
    rows and `ARTIFACT_DIAGRAMS` diagrams (the console's Calibration page shows every group)."""
    shown = sorted(results, key=lambda r: (r["status"] != "fitted" or bool(r.get("passed")), r["model_version"],
                                           r["segment"]))[:ARTIFACT_ROWS]
    lines = [
        "| model | segment | method | n | ECE | ECE upper | gate | reasons | drift PSI | diagram |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in shown:
        diagram = f"[{Path(r['diagram']).name}]({Path(r['diagram']).as_uri()})"
        if r["status"] == "fitted":
            lines.append(
                f"| {r['model_version']} | {r['segment']} | {r['method']} | {r['n']} | {r['ece']:.4f} | "
                f"{r['ece_high']:.4f} | {'pass' if r['passed'] else 'fail'} | {', '.join(r['reasons'])} | "
                f"{_drift_cell(r['drift'])} | {diagram} |"
            )
        else:
            lines.append(f"| {r['model_version']} | {r['segment']} | (unchanged) | | | | | | "
                         f"{_drift_cell(r['drift'])} | {diagram} |")
    if len(results) > len(shown):
        lines += ["", f"{len(results) - len(shown)} more group(s) not shown: the console's Calibration page has them."]
    lines += ["", "Reliability diagrams (PNG):", ""]
    lines += [f"![{r['model_version']} / {r['segment']}]({Path(r['diagram']).as_uri()})"
              for r in shown[:ARTIFACT_DIAGRAMS]]
    return "\n".join(lines)


@flow(name="calibrate", log_prints=True, task_runner=BATCH_RUNNER)
@holds_store_lock
def calibrate_flow(settings: SluiceSettings | None = None, max_psi: float = DEFAULT_MAX_PSI) -> list[dict[str, Any]]:
    """Refit the recalibrator of every model in use and segment whose unbiased labels changed, and mark a
    report stale (report["drift"]["stale"]) when newer confidences drift past `max_psi`."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    policy, _ = active_policy(engine)
    seen = segments_seen(engine)
    with settled() as futures:
        for version in models_in_use(engine):
            jobs = calibration_jobs(policy, held_out_labels(engine, version), seen=seen)
            futures += [fit_batch.submit(version, Payload(jobs[k:k + CALIBRATION_BATCH]), settings, max_psi)
                        for k in range(0, len(jobs), CALIBRATION_BATCH)]
        results = [r for f in futures for r in f.result()]
    if results:
        create_markdown_artifact(_markdown(results), key="calibration-report", description="Calibration per segment")
    logger.info("calibrate: %d segment(s), %d refitted", len(results), sum(r["status"] == "fitted" for r in results))
    return results
