"""The `sluice` command line: each command runs the matching Prefect flow and prints what it did."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click
import typer
from rich.console import Console
from rich.table import Table

import flows  # noqa: F401  (Prefect's offline defaults, before Prefect is imported)

if TYPE_CHECKING:
    from store.settings import SluiceSettings

if not {"-v", "--verbose"} & set(sys.argv):
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

app = typer.Typer(help="Sluice: calibrated routing of model outputs, active learning with Label Studio.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
labelstudio_app = typer.Typer(help="Run the local open-source Label Studio (its own virtual environment).",
                              no_args_is_help=True)
policy_app = typer.Typer(help="Show and change the versioned routing policy.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of routing decisions.", no_args_is_help=True)
export_app = typer.Typer(help="Training data out of people's answers on LLM-pipeline items, with provenance.",
                         no_args_is_help=True)
models_app = typer.Typer(help="The model registry's artifacts.", no_args_is_help=True)
user_app = typer.Typer(help="Console accounts: who signs in to `sluice ui`, with which role.", no_args_is_help=True)
lock_app = typer.Typer(help="The store's lock: one flow at a time on a store, freed when its holder dies.",
                       no_args_is_help=True)
app.add_typer(labelstudio_app, name="labelstudio")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(lock_app, name="lock")
app.add_typer(user_app, name="user")
app.add_typer(export_app, name="export")
app.add_typer(models_app, name="models")
console = Console(width=None if sys.stdout.isatty() else 160)

DatabaseOption = typer.Option(None, "--database-url",
                              help="SQLAlchemy URL (default: SLUICE_DATABASE_URL; SQLite under SLUICE_HOME, .sluice/, "
                                   "when unset).")


@contextmanager
def prefect_quietly() -> Iterator[None]:
    """The Prefect API for this command (`PREFECT_API_URL`, or a temporary server that ends when the command
    ends, however it ends: `flows.prefect_server`), without the 1 s per-flow heartbeat, and one API client for
    every flow the command runs. The server starts before the heartbeat setting changes: it takes the settings in
    force, and that one cannot be written to its environment.

    Prefect opens a client per top-level flow run unless one is open already, and each new client loads the
    certificate store into a TLS context (even for a plain-HTTP API) and opens a new connection: about half of an
    empty flow run's 0.15 s on this project's machine. A command that runs several flows (the demo, a benchmark)
    pays that once."""
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.prefect_server import temporary_api

    with temporary_api():
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), SyncClientContext.get_or_create():
            yield


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def show(title: str, summary: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in summary.items():
        table.add_row(str(key), json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    console.print(table)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's flow and task logs."),
    task_runner: str = typer.Option(None, "--task-runner", envvar="SLUICE_TASK_RUNNER",
                                    help="Where batch tasks run: threads (default) or dask."),
    dask_address: str = typer.Option(None, "--dask-address", envvar="SLUICE_DASK_ADDRESS",
                                     help="A Dask scheduler, e.g. tcp://scheduler:8786; a local cluster when unset."),
) -> None:
    """Sluice: calibrated routing of model outputs, active learning with Label Studio."""
    if task_runner is not None and task_runner not in ("threads", "dask"):
        fail(f"--task-runner must be threads or dask, got {task_runner!r}")
    # one settings object for the command: the environment's, with its flags; every flow it runs is given it
    ctx.obj = _with_flags(None, task_runner=task_runner, dask_address=dask_address)


def _with_flags(base: SluiceSettings | None, **flags: Any) -> SluiceSettings:
    """`base` (the environment's settings when None) with the flags that were given; a bad value fails."""
    from pydantic import ValidationError

    from store.settings import settings_or_environment

    given = {name: value for name, value in flags.items() if value is not None}
    try:
        settings = settings_or_environment(base)
        return settings.variant(**given) if given else settings
    except ValidationError as error:
        fail("invalid settings: " + "; ".join(
            f"SLUICE_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()))
        raise


def command_settings(database_url: str | None = None) -> SluiceSettings:
    """The settings of this command: the environment's with the global flags (`main`), and `--database-url`."""
    context = click.get_current_context(silent=True)
    base = context.find_root().obj if context is not None else None
    return _with_flags(base, database_url=database_url)


@app.command()
def init(database_url: str | None = DatabaseOption) -> None:
    """Create or migrate the database and activate the default policy if none is active."""
    from flows.common import engine_for
    from store.policies import active_policy

    engine = engine_for(command_settings(database_url))
    _, version = active_policy(engine)
    console.print(f"database ready at [bold]{engine.url.render_as_string(hide_password=True)}[/]; "
                  f"active policy {version}")


@app.command()
def status(database_url: str | None = DatabaseOption) -> None:
    """The store (where, which schema) and its lock: free, or held by which flow run, process and host, since when."""
    from store.db import StoreNotReady, head_revision, read_only_engine

    settings = command_settings(database_url)
    url = settings.resolved_database_url
    try:
        engine = read_only_engine(url)
    except StoreNotReady as error:
        console.print(f"store  {settings.shown_database_url}: {error}", markup=False)
    else:
        engine.dispose()
        console.print(f"store  {settings.shown_database_url} (schema {head_revision()}, current)", markup=False)
    _print_lock(url)
    console.print(f"review {settings.shown_labelstudio_url} (Label Studio), project {settings.labelstudio_project!r}",
                  markup=False)


def _print_lock(url: str) -> None:
    from store.lock import lock_status

    state = lock_status(url)
    console.print(f"lock   {state.describe()}", markup=False)


@lock_app.command("status")
def lock_status_command(database_url: str | None = DatabaseOption) -> None:
    """Whether the store's lock is held, by which flow run, process and host, since when, and if it still lives."""
    _print_lock(command_settings(database_url).resolved_database_url)


@lock_app.command("release")
def lock_release(database_url: str | None = DatabaseOption) -> None:
    """Free the store's lock from a holder that is gone, and only then (a live holder is refused).

    A holder that dies frees the lock by itself (SQLite: at once; PostgreSQL: at once, or within 60 s when its
    host vanished); this clears the stale record, or ends a PostgreSQL session still holding the lock for a
    process of this host that is gone."""
    from store.lock import LockHeld, release_dead_holder

    try:
        console.print(release_dead_holder(command_settings(database_url).resolved_database_url), markup=False)
    except LockHeld as error:
        fail(f"not released: {error}")


@app.command()
def ingest(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL, CSV or Parquet file of items."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Stream a file of items into the store (idempotent on id; bad records are quarantined with a reason)."""
    from flows.ingest import ingest_flow

    from store.ingest import check_file

    try:
        check_file(path)
    except ValueError as error:  # a file that cannot be read as items at all: nothing is stored
        fail(f"cannot ingest {path}: {error}")
    with prefect_quietly():
        summary = ingest_flow(str(path), settings=command_settings(database_url),
                              show_progress=sys.stderr.isatty())
    show(f"ingested {path.name}", summary)


@app.command("seed-labels")
def seed_labels(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL or CSV of id, label."),
    holdout: float = typer.Option(0.5, help="Share kept apart to evaluate and calibrate models."),
    seed: int = typer.Option(0),
    database_url: str | None = DatabaseOption,
) -> None:
    """Add known labels for ingested items (the seed of the training and held-out sets)."""
    from flows.ingest import seed_labels_flow

    from flows.ingest import iter_labels

    try:  # the whole file is checked before anything is stored: a malformed line is named and nothing is added
        for _ in iter_labels(path):
            pass
    except ValueError as error:
        fail(f"{error}; nothing was stored")
    with prefect_quietly():
        show("seed labels", seed_labels_flow(str(path), holdout_share=holdout, seed=seed,
                                             settings=command_settings(database_url)))


def _run_step(name: str, database_url: str | None, **kwargs: Any) -> None:
    from flows import calibrate, labelstudio, retrain, route, score, select

    steps: dict[str, Callable[..., Any]] = {
        "score": score.score_flow, "calibrate": calibrate.calibrate_flow, "route": route.route_flow,
        "select": select.select_flow, "push": labelstudio.push_flow, "pull": labelstudio.pull_flow,
        "retrain": retrain.retrain_flow,
    }
    step = steps[name]
    from flows.common import StepFailed

    try:
        with prefect_quietly():
            result = step(settings=command_settings(database_url), **kwargs)
    except StepFailed as error:  # the step said why (Label Studio down or refusing the token, the store busy)
        fail(str(error))
    if isinstance(result, list):
        if not result:
            console.print(f"{name}: nothing to do (no predictions of the models in use on held-out labels yet; "
                          "`sluice score` makes them)")
        elif len(result) > SHOW_EACH:
            show(name, calibration_summary(result))
        for row in result if len(result) <= SHOW_EACH else ():
            show(name, row)
    else:
        show(name, result)


SHOW_EACH = 10  # calibration groups printed one table each; more are summed up in one table


def calibration_summary(results: list[dict[str, Any]], *, named: int = 10) -> dict[str, Any]:
    """One table for many calibration groups (ten thousand segments must not print ten thousand tables): how many
    were refitted and passed the gate, and the first groups that failed it."""
    fitted = [r for r in results if r.get("status") == "fitted"]
    failed = [r for r in fitted if not r.get("passed")]
    stale = [r for r in results if (r.get("drift") or {}).get("stale")]
    summary: dict[str, Any] = {
        "groups": len(results), "models": sorted({r["model_version"] for r in results}), "refitted": len(fitted),
        "unchanged": len(results) - len(fitted), "passed": len(fitted) - len(failed), "failed": len(failed),
        "drift_stale": len(stale),
    }
    if failed:
        summary["first_failed"] = [f"{r['model_version']}/{r['segment']}: {', '.join(r.get('reasons') or [])}"
                                   for r in failed[:named]]
    summary["details"] = "each group's report: the console's Calibration page, or Prefect's calibration-report artifact"
    return summary


@app.command()
def score(database_url: str | None = DatabaseOption) -> None:
    """Score items that lack a prediction from the promoted model (or use their upstream scores)."""
    _run_step("score", database_url)


@app.command()
def calibrate(database_url: str | None = DatabaseOption) -> None:
    """Refit per-segment recalibration on unbiased held-out labels and gate each segment."""
    _run_step("calibrate", database_url)


@app.command()
def route(database_url: str | None = DatabaseOption) -> None:
    """Route every scored item: auto-accept, spot-check, review or escalate, with reasons."""
    _run_step("route", database_url)


STRATEGY_HELP = ("How review items are chosen within each budget: margin, entropy, least_confidence, diverse, random "
                 "(most useful first), or active (each drawn with a known probability growing with its uncertainty, "
                 "at least the policy's min_review_probability: every such label can be weighted into unbiased "
                 "estimates).")


def _strategy(value: str) -> str:
    from flows.select import SELECT_STRATEGIES

    if value not in SELECT_STRATEGIES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SELECT_STRATEGIES)}")
    return value


StrategyOption = typer.Option("margin", "--strategy", help=STRATEGY_HELP, callback=_strategy)


@app.command()
def select(strategy: str = StrategyOption, database_url: str | None = DatabaseOption) -> None:
    """Choose this cycle's review tasks within each segment's budget (plus every audit sample)."""
    _run_step("select", database_url, strategy=strategy)


@app.command()
def push(database_url: str | None = DatabaseOption) -> None:
    """Push pending review tasks to Label Studio (safe to re-run after any failure)."""
    _run_step("push", database_url)


@app.command()
def pull(database_url: str | None = DatabaseOption) -> None:
    """Pull completed annotations from Label Studio and resolve them into labels."""
    _run_step("pull", database_url)


@app.command()
def retrain(seed: int = typer.Option(0), database_url: str | None = DatabaseOption) -> None:
    """Train a candidate; promote it unless the held-out labels show it is worse (paired sign test, 5%)."""
    _run_step("retrain", database_url, seed=seed)


@app.command()
def cycle(strategy: str = StrategyOption, database_url: str | None = DatabaseOption) -> None:
    """Run one full cycle: score, calibrate, route, select, push, pull, retrain."""
    from flows.cycle import cycle_flow

    with prefect_quietly():
        result = cycle_flow(strategy=strategy, settings=command_settings(database_url))
    show(f"cycle {result['cycle']}", result["figures"])


@app.command()
def demo(
    cycles: int = typer.Option(5, min=1),
    batch_size: int = typer.Option(300, min=1, help="Production items arriving per cycle."),
    seed_labels: int | None = typer.Option(None, min=10, help="Labelled items the first model starts from (200), "
                                                           "or a pilot labels before the score is trusted (400)."),
    annotator_error: float = typer.Option(0.03, min=0.0, max=1.0, help="Share of wrong simulated answers."),
    seed: int = typer.Option(0),
    home: Path = typer.Option(Path(".sluice/demo"), help="State folder of the demo (recreated)."),
    kind: str = typer.Option("classification", help="classification (BBC News topics), or the outputs of an LLM "
                                                    "pipeline: generation or pairwise (SEMI-SYNTHETIC data)"),
) -> None:
    """The main job: BBC News through the whole loop, with simulated annotators answering in Label Studio
    (`--kind generation|pairwise`: generated responses or preference pairs in their own queues)."""
    if kind != "classification":
        from flows.demo_kinds import DEMO_KINDS, run_kind_demo

        if kind not in DEMO_KINDS:
            fail(f"--kind must be classification, {' or '.join(DEMO_KINDS)}, got {kind!r}")
        with prefect_quietly():
            run_kind_demo(kind=kind, cycles=cycles, batch_size=batch_size, pilot_labels=seed_labels or 400,
                          annotator_error=annotator_error, seed=seed, home=home, console=console,
                          settings=command_settings())
        return
    from flows.demo import run_demo

    with prefect_quietly():
        run_demo(cycles=cycles, batch_size=batch_size, seed_labels=seed_labels or 200,
                 annotator_error=annotator_error, seed=seed, home=home, console=console, settings=command_settings())


@app.command()
def simulate(
    items: Path = typer.Option(..., exists=True, dir_okay=False, help="Items file (JSONL, CSV or Parquet)."),
    labels: Path = typer.Option(..., exists=True, dir_okay=False, help="Ground truth: JSONL or CSV of id, label."),
    seed_labels: int = typer.Option(100, min=2),
    cycles: int = typer.Option(5, min=1),
    batch_size: int = typer.Option(500, min=1),
    budget: int = typer.Option(50, min=0),
    strategy: str = StrategyOption,
    annotator: str = typer.Option("direct", help="direct (answers from the labels file) or labelstudio"),
    annotator_error: float = typer.Option(0.0, min=0.0, max=1.0),
    test_share: float = typer.Option(0.2, min=0.01, max=0.9, help="Fixed held-out test split."),
    seed: int = typer.Option(0),
    json_out: Path | None = typer.Option(None, "--json", help="Write the per-cycle figures here."),
    home: Path | None = typer.Option(None, help="State folder (a fresh temporary one when unset)."),
    policy: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                       help="Routing policy YAML (default: the embedded default policy); its "
                                            "labels and default review budget are set from the data and --budget."),
    retrain_every: int = typer.Option(1, min=1, help="Retrain after every Nth cycle (1: every cycle); in between "
                                                     "the same model keeps routing, as on a retrain schedule of "
                                                     "its own."),
) -> None:
    """The loop over any labelled dataset, for experiments; accuracy is on a fixed split it never labels."""
    from flows.simulate import SimulationConfig, run_simulation

    config = SimulationConfig(items=items, labels=labels, seed_labels=seed_labels, cycles=cycles,
                              batch_size=batch_size, budget=budget, strategy=strategy, annotator=annotator,
                              annotator_error=annotator_error, test_share=test_share, seed=seed, home=home,
                              policy=policy, retrain_every=retrain_every)
    with prefect_quietly():
        result = run_simulation(config, settings=command_settings(), console=console)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, default=str))
        console.print(f"wrote {json_out}")


@policy_app.command("show")
def policy_show(database_url: str | None = DatabaseOption) -> None:
    """Print the active policy document and its version."""
    from flows.common import engine_for
    from store.policies import active_policy

    from store.budget import window_split

    engine = engine_for(command_settings(database_url))
    policy, version = active_policy(engine)
    console.print(f"# version {version}")
    for line in policy.guarantee_lines():
        console.print(f"# {line}", markup=False)
    for line in policy.budget_lines():
        console.print(f"# budget {line}", markup=False)
    for segment, split in window_split(engine, policy).items():
        parts = ", ".join(f"{reason} {n}" for reason, n in split.items() if reason not in ("total", "budget"))
        console.print(f"# this window, {segment}: {split['total']} of {split['budget']} labels asked ({parts})",
                      markup=False)
    console.print(policy.to_yaml(), markup=False)


@policy_app.command("set")
def policy_set(
    path: Path = typer.Argument(..., exists=True, dir_okay=False),
    author: str = typer.Option(os.environ.get("USER", "operator")),
    comment: str = typer.Option("", help="Why the policy changes."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Validate a policy YAML, save it as a new immutable version and make it active."""
    from pydantic import ValidationError

    from flows.common import engine_for, load_policy_file
    from store.policies import save_policy

    try:
        policy = load_policy_file(path)
    except (ValidationError, ValueError) as error:
        fail(f"invalid policy {path}:\n{error}")
    version = save_policy(engine_for(command_settings(database_url)), policy, author=author, comment=comment)
    console.print(f"policy {policy.name!r} active as version {version}")


@labelstudio_app.command("start")
def labelstudio_start(timeout: float = typer.Option(240.0, help="Seconds to wait for the first start.")) -> None:
    """Start Label Studio on 127.0.0.1 (first start migrates its database: about a minute)."""
    from labeling.errors import LabelStudioError
    from labeling.server import LabelStudioServer

    settings = command_settings()
    console.print(f"starting Label Studio on {settings.shown_labelstudio_url} "
                  f"(data in {settings.labelstudio_data_dir}) …")
    try:
        status = LabelStudioServer(settings).start(timeout=timeout)
    except LabelStudioError as error:
        fail(str(error))
    console.print(f"Label Studio {status.version or ''} running at {status.url} (pid {status.pid}); "
                  f"sign in as {settings.labelstudio_username}")


@labelstudio_app.command("stop")
def labelstudio_stop() -> None:
    """Stop the local Label Studio by its process id."""
    from labeling.server import LabelStudioServer

    console.print(LabelStudioServer(command_settings()).stop().message)


@labelstudio_app.command("webhook")
def labelstudio_webhook(
    port: int = typer.Option(8787, min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)."),
    seconds: float = typer.Option(0.0, min=0.0, help="Stop after this many seconds (0: run until Ctrl-C)."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Receive Label Studio's webhooks on 127.0.0.1 and pull as soon as annotations change.

    Optional: the scheduled `sluice pull` stays the source of truth (Label Studio's webhooks have a 1 s timeout
    and no retries). The webhook is registered on the review and expert projects with a fresh secret token.
    """
    import secrets
    import time

    from flows.common import engine_for
    from flows.labelstudio import QUEUES, open_queue, pull_flow
    from labeling.errors import LabelStudioError
    from labeling.webhook import WebhookReceiver

    settings = command_settings(database_url)
    engine = engine_for(settings)
    token = secrets.token_urlsafe(24)
    with prefect_quietly():
        receiver = WebhookReceiver(on_change=lambda: pull_flow(settings=settings), port=port, token=token)
        url = receiver.start()
        try:
            for queue_name in QUEUES:
                queue, project_id = open_queue(engine, settings, queue_name=queue_name)
                queue.ensure_webhook(project_id, url, token=token)
            console.print(f"listening on {url} for Label Studio's annotation webhooks (Ctrl-C stops)")
            started = time.monotonic()
            while not seconds or time.monotonic() - started < seconds:
                time.sleep(0.5)
        except (LabelStudioError, ValueError) as error:
            fail(f"cannot register the webhook: {error}")
        except KeyboardInterrupt:
            pass
        finally:
            receiver.stop()
    console.print(f"stopped: {receiver.events} change event(s), {receiver.runs} pull(s), {receiver.errors} failed")


@labelstudio_app.command("status")
def labelstudio_status() -> None:
    """Whether the local Label Studio is running, and where."""
    from labeling.server import LabelStudioServer

    status = LabelStudioServer(command_settings()).status()
    state = "[green]running[/]" if status.running else "[yellow]stopped[/]"
    console.print(f"Label Studio {state} at {status.url} pid={status.pid} version={status.version} "
                  f"data={status.data_dir}")
    if not status.running:
        raise typer.Exit(code=3)


@labelstudio_app.command("queue")
def labelstudio_queue(database_url: str | None = DatabaseOption) -> None:
    """Tasks waiting for people, per Label Studio project: by why they were chosen, how many, and the age of the
    oldest; in the order annotators get them (escalations, audits and gold, then reviews). Read from the store: no
    call to Label Studio."""
    from datetime import datetime, timezone

    from flows.common import engine_for
    from flows.labelstudio import project_title
    from labeling.queue import tier
    from store.outbox import waiting_by_reason

    settings = command_settings(database_url)
    groups = waiting_by_reason(engine_for(settings))
    if not groups:
        console.print("no task is waiting for people")
        return
    now = datetime.now(timezone.utc)
    table = Table(title="tasks waiting for people")
    for column in ("project", "reason", "state", "tasks", "oldest"):
        table.add_column(column, justify="right" if column == "tasks" else "left")
    order = sorted(groups, key=lambda g: (g.queue, g.kind, tier(g.queue, g.selection_reason), g.selection_reason))
    for group in order:
        age = "" if group.oldest is None else _age(now - group.oldest)
        table.add_row(project_title(settings, group.queue, group.kind), group.selection_reason,
                      "in Label Studio" if group.state == "pushed" else "not pushed yet", f"{group.tasks:,}", age)
    console.print(table)


def _age(delta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="A name or email (for OIDC sign-in: the email the provider gives)."),
    role: str = typer.Option("viewer", help="viewer (reads), operator (changes the policy) or approver (also "
                                            "approves changes to regulated or high-stakes segments)."),
    oidc: bool = typer.Option(False, "--oidc", help="Signs in through the organisation's OIDC provider: no "
                                                    "password is kept here."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Create a console account (a local one asks for its password: at least 10 characters; only a salted scrypt
    hash is stored)."""
    from flows.common import engine_for
    from store.accounts import AccountError, add_account

    engine = engine_for(command_settings(database_url))
    try:
        record = add_account(engine, username, role=role, password=None if oidc else _password(password_stdin))
    except AccountError as error:
        fail(str(error))
    how = "through the organisation's sign-in" if oidc else "with its password"
    console.print(f"account {record.username!r} ({record.role.value}) signs in to the console {how}", markup=False)


@user_app.command("list")
def user_list(database_url: str | None = DatabaseOption) -> None:
    """The console's accounts and their roles."""
    from flows.common import engine_for
    from store.accounts import list_accounts

    table = Table("account", "role", "sign-in", "created", "disabled", title_justify="left")
    for record in list_accounts(engine_for(command_settings(database_url))):
        table.add_row(record.username, record.role.value, "password" if record.local else "OIDC",
                      record.created_at.isoformat(timespec="seconds"), "yes" if record.disabled else "")
    console.print(table)


@user_app.command("passwd")
def user_passwd(username: str, password_stdin: bool = typer.Option(False, "--password-stdin"),
                database_url: str | None = DatabaseOption) -> None:
    """Set a new password for a local account."""
    from flows.common import engine_for
    from store.accounts import AccountError, set_password

    try:
        set_password(engine_for(command_settings(database_url)), username, _password(password_stdin))
    except AccountError as error:
        fail(str(error))
    console.print(f"password of {username!r} changed", markup=False)


@user_app.command("role")
def user_role(username: str, role: str, database_url: str | None = DatabaseOption) -> None:
    """Give an account another role (viewer, operator, approver)."""
    from flows.common import engine_for
    from store.accounts import AccountError, set_role

    try:
        set_role(engine_for(command_settings(database_url)), username, role)
    except AccountError as error:
        fail(str(error))
    console.print(f"{username!r} is now a {role}", markup=False)


@user_app.command("remove")
def user_remove(username: str, database_url: str | None = DatabaseOption) -> None:
    """Delete a console account (the policy versions it wrote keep its name)."""
    from flows.common import engine_for
    from store.accounts import AccountError, remove_account

    try:
        remove_account(engine_for(command_settings(database_url)), username)
    except AccountError as error:
        fail(str(error))
    console.print(f"account {username!r} removed", markup=False)


@audit_app.command("export")
def audit_export(
    out: Path = typer.Argument(..., dir_okay=False, help="Output file: .jsonl or .csv"),
    since: str | None = typer.Option(None, help="ISO date or time; decisions at or after it."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Write routing decisions (item, route, reasons, versions, thresholds, confidences, time)."""
    from flows.audit import export_decisions
    from flows.common import engine_for

    try:
        count = export_decisions(engine_for(command_settings(database_url)), out, since=since)
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {out}: {error.strerror or error}")
    console.print(f"wrote {count:,} decisions to {out}")


def _export(form: str, out: Path, since: str | None, database_url: str | None) -> None:
    from flows.audit import parse_since
    from flows.common import engine_for
    from labeling.export import export_training_data

    try:
        moment = parse_since(since)
        engine = engine_for(command_settings(database_url))
        if sys.stderr.isatty():
            from rich.progress import Progress, SpinnerColumn, TextColumn

            with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed:,} answers"),
                          console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task(f"export {form}")

                def tick(records):
                    for record in records:
                        bar.advance(task)
                        yield record

                result = export_training_data(engine, form, out, since=moment, progress=tick)
        else:
            result = export_training_data(engine, form, out, since=moment)
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {out}: {error.strerror or error}")
    console.print(f"{out}: {result.written:,} new record(s) appended; {result.known:,} already there; "
                  f"{result.no_record:,} answer(s) make no {form} record", markup=False)


@export_app.command("sft")
def export_sft(
    out: Path = typer.Argument(..., dir_okay=False, help="JSON lines file to append to (created if missing)."),
    since: str | None = typer.Option(None, help="ISO date or time: only answers resolved at or after it."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Supervised fine-tuning records: the prompt as chat messages and the response people accepted, or their
    correction of one they rejected, with provenance in `metadata`. Incremental: a second run adds only new
    answers."""
    _export("sft", out, since, database_url)


@export_app.command("dpo")
def export_dpo(
    out: Path = typer.Argument(..., dir_okay=False, help="JSON lines file to append to (created if missing)."),
    since: str | None = typer.Option(None, help="ISO date or time: only answers resolved at or after it."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Preference records {prompt, chosen, rejected}: from pairwise answers (a tie gives none) and from
    corrections (the correction chosen over the response it corrects). Incremental."""
    _export("dpo", out, since, database_url)


@export_app.command("extraction")
def export_extraction(
    out: Path = typer.Argument(..., dir_okay=False, help="JSON lines file to append to (created if missing)."),
    since: str | None = typer.Option(None, help="ISO date or time: only answers resolved at or after it."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Documents with their fields as people confirmed or corrected them, naming which were corrected,
    confirmed or not reviewed. Incremental."""
    _export("extraction", out, since, database_url)


@models_app.command("sign")
def models_sign(database_url: str | None = DatabaseOption) -> None:
    """Trust the store's registered model artifacts whose bytes match the registry: sign them with this
    installation's key (artifacts saved before signing, or after the key changed). A file whose sha256 differs
    from the registry's is reported and left unsigned."""
    from flows.common import artifact_file, engine_for
    from scoring.errors import ArtifactIntegrityError
    from scoring.registry import sign_artifact
    from store.registry import model_artifacts

    settings = command_settings(database_url)
    signed, refused = 0, []
    for artifact in model_artifacts(engine_for(settings)):
        try:
            sign_artifact(artifact_file(artifact, settings), sha256=artifact.sha256)
            signed += 1
        except (ArtifactIntegrityError, OSError) as error:
            refused.append(f"{artifact.version}: {error}")
    for line in refused:
        console.print(f"not signed: {line}", markup=False)
    console.print(f"{signed} artifact(s) signed, {len(refused)} refused")
    if refused:
        raise typer.Exit(1)


def console_command(port: int, secrets: Path | None = None) -> list[str]:
    """The command line that serves the console on 127.0.0.1:`port`: `ui/serve.py` (the pages of `ui/app.py` behind
    a Host allow-list) with XSRF protection on."""
    serve = Path(__file__).resolve().parents[1] / "ui" / "serve.py"
    options = ["--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    if secrets is not None:
        options += ["--secrets.files", str(secrets.resolve())]
    return [sys.executable, "-m", "streamlit", "run", str(serve), *options]


@app.command()
def ui(
    port: int = typer.Option(8501),
    secrets: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                        help="A secrets.toml with an [auth] section: sign-in through your "
                                             "organisation's OIDC provider (default: local accounts only, "
                                             "`sluice user add`)."),
    database_url: str | None = DatabaseOption,
) -> None:
    """Serve the ops console on 127.0.0.1 (every page needs a signed-in account: `sluice user add`)."""
    command_settings(database_url)  # a malformed setting (SLUICE_UI_ALLOWED_HOSTS, ...) is a one-line error here
    env = dict(os.environ)
    if database_url:
        env["SLUICE_DATABASE_URL"] = database_url
    command = console_command(port, secrets)
    console.print(f"console at http://127.0.0.1:{port}")
    sys.stdout.flush()
    # Streamlit replaces this process (same pid): a SIGTERM or Ctrl-C sent to `sluice ui` reaches the server itself
    # and leaves nothing behind, as a child process would
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    app()
