"""The `sluice` command line, run in-process, and the deployments declared in prefect.yaml."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str):
    from flows.cli import app

    return runner.invoke(app, list(args), catch_exceptions=False)


def flat(output: str) -> str:
    """`output` with every run of whitespace, line breaks included, as one space."""
    return " ".join(output.split())


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("init", "ingest", "seed-labels", "score", "calibrate", "route", "select", "push", "pull",
                    "retrain", "cycle", "demo", "simulate", "policy", "audit", "labelstudio", "ui", "status", "lock"):
        assert command in result.output


def _entrypoints(path: Path) -> list[str]:
    return [d["entrypoint"] for d in yaml.safe_load(path.read_text())["deployments"]]


def test_the_two_deployment_modes_point_at_flows_and_do_not_overlap():
    """prefect.yaml deploys the whole cycle; deploy/steps.yaml the steps instead; never the cycle and a step."""
    from prefect import Flow

    cycle, steps = _entrypoints(ROOT / "prefect.yaml"), _entrypoints(ROOT / "deploy" / "steps.yaml")
    ingest = "flows/ingest.py:ingest_flow"  # on demand, in either mode: it does not hold the store
    assert sorted(cycle) == sorted({"flows/cycle.py:cycle_flow", ingest})
    assert "flows/cycle.py:cycle_flow" not in steps and len(set(steps)) == len(steps) == 8
    for entrypoint in set(cycle) | set(steps):
        path, name = entrypoint.split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow), entrypoint
    # every step the cycle runs has a deployment of its own in the steps mode
    for step in ("score", "calibrate", "route", "select", "labelstudio.py:push", "labelstudio.py:pull", "retrain"):
        assert any(step in entrypoint for entrypoint in steps), step


def test_init_and_policy_commands(sluice_home, tmp_path):
    assert invoke("init").exit_code == 0
    shown = invoke("policy", "show")
    assert "name: default" in shown.output
    assert "# defaults: target: error among auto-accepted items <= 0.05 with confidence 0.9" in shown.output
    assert "# budget defaults: 50 human labels per hour, covering every label asked for" in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndefaults: {spot_check_rate: 1.5}\n")
    result = invoke("policy", "set", str(bad))
    assert result.exit_code == 1 and "spot_check_rate" in result.output
    good = tmp_path / "good.yaml"
    good.write_text("name: tighter\ndefaults: {auto_accept_threshold: 0.97}\n")
    assert invoke("policy", "set", str(good), "--comment", "tighter").exit_code == 0
    tighter = invoke("policy", "show").output
    assert "auto_accept_threshold: 0.97" in tighter
    assert "# defaults: fixed auto_accept_threshold 0.97: carries no guarantee" in tighter


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_ingest_reports_quarantine_by_reason_and_audit_export(sluice_home, tmp_path):
    path = tmp_path / "items.jsonl"
    lines = [json.dumps({"id": "a1", "text": "fine", "prediction": "x", "confidence": 0.97}),
             json.dumps({"text": "no id"}),
             '{"id": "a2", "text": "nan", "confidence": NaN}',
             json.dumps({"id": "a3", "text": "bad probs", "probs": {"x": 0.5, "y": 0.2}})]
    path.write_text("\n".join(lines) + "\n")
    result = invoke("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert '"missing_id": 1' in result.output and '"confidence_invalid": 1' in result.output
    assert '"probs_not_normalised": 1' in result.output
    again = invoke("ingest", str(path))
    assert again.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in again.output.splitlines()
            if line.count("│") == 3}
    assert rows["accepted"] == "0" and rows["duplicate"] == "1"
    assert invoke("score").exit_code == 0 and invoke("route").exit_code == 0
    out = tmp_path / "decisions.jsonl"
    assert invoke("audit", "export", str(out), "--since", "2000-01-01").exit_code == 0
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["item_id"] for d in decisions] == ["a1"]
    assert decisions[0]["route"] == "review" and "calibration_missing" in decisions[0]["reasons"]
    assert decisions[0]["policy_version"] and decisions[0]["model_version"] == "upstream"
    selected = invoke("select")  # a confidence without class probabilities still gets a margin
    assert selected.exit_code == 0 and "queued" in selected.output and "│ 1" in selected.output


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_simulate_takes_a_policy_file(sluice_home, dataset_files, tmp_path):
    items, labels = dataset_files
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: strict\ndefaults: {max_auto_error: 0.01, confidence: 0.95, review_budget: 5}\n")
    out = tmp_path / "sim.json"
    result = invoke("simulate", "--items", str(items), "--labels", str(labels), "--seed-labels", "100",
                    "--cycles", "1", "--batch-size", "100", "--budget", "10", "--policy", str(policy),
                    "--json", str(out), "--home", str(tmp_path / "home"))
    assert result.exit_code == 0, result.output
    cycle = json.loads(out.read_text())["cycles"][0]
    assert cycle["target_error"] == 0.01 and cycle["halted_segments"] == []
    assert cycle["labels_spent"] >= 10 and cycle["auto_accepted"] == 0  # 50 held-out labels certify nothing


@pytest.mark.integration
def test_status_names_the_holder_and_release_refuses_a_live_one(sluice_home, monkeypatch):
    """`sluice status` and `sluice lock release` against a lock held by a real process, then after its SIGKILL."""
    import os
    import signal
    import subprocess
    import sys

    from store.settings import get_settings

    assert invoke("init").exit_code == 0
    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", "https://ops:Ls-pw-9@labelstudio.internal/")
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom store.lock import hold_store_lock\n"
         "with hold_store_lock(sys.argv[1], flow='nightly-retrain', timeout=30):\n"
         "    print('held', flush=True); time.sleep(600)", url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        shown = invoke("status")
        assert shown.exit_code == 0, shown.output
        text = flat(shown.output)  # the console wraps its lines, where depends on the length of the store's path
        assert "current" in text and "flow 'nightly-retrain'" in text
        assert f"process {holder.pid}" in text and "[alive]" in text
        assert "https://ops:***@labelstudio.internal/" in text and "Ls-pw-9" not in text
        refused = invoke("lock", "release")
        assert refused.exit_code == 1 and "live process" in flat(refused.output)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    after = flat(invoke("lock", "status").output)
    assert "free" in after and "ended without releasing it" in after
    released = invoke("lock", "release")
    assert released.exit_code == 0 and "cleared the record" in flat(released.output)
    assert invoke("lock", "status").output.startswith("lock   free (")


def test_user_commands_create_list_and_change_accounts(sluice_home):
    from flows.cli import app
    from flows.common import engine_for
    from store.accounts import authenticate

    added = runner.invoke(app,
                          ["user", "add", "ana@ops.example", "--role", "operator", "--password-stdin"],
                          input="a long passphrase\n")
    assert added.exit_code == 0, added.output
    assert invoke("user", "add", "dee@corp.example", "--role", "approver", "--oidc").exit_code == 0
    listed = invoke("user", "list").output
    assert "ana@ops.example" in listed and "operator" in listed and "OIDC" in listed
    assert authenticate(engine_for(None), "ana@ops.example", "a long passphrase") is not None
    weak = runner.invoke(app,
                         ["user", "add", "bo", "--password-stdin"], input="short\n")
    assert weak.exit_code == 1 and "at least 10" in weak.output
    assert invoke("user", "role", "ana@ops.example", "approver").exit_code == 0
    assert "approver" in invoke("user", "list").output.split("ana@ops.example")[1].splitlines()[0]
    assert invoke("user", "remove", "nobody").exit_code == 1


@pytest.mark.parametrize("args, message", [
    (("audit", "export", "OUT.csv", "--since", "yesterday"), "--since must be an ISO date"),
    (("export", "sft", "OUT.jsonl", "--since", "yesterday"), "--since must be an ISO date"),
    (("audit", "export", "/proc/no-such-dir/a.csv"), "cannot write /proc/no-such-dir/a.csv"),
    (("export", "dpo", "/proc/no-such-dir/a.jsonl"), "cannot write /proc/no-such-dir/a.jsonl"),
    (("export", "sft", "OUT.csv"), "give a .jsonl file"),
])
def test_export_mistakes_are_one_line_errors(sluice_home, tmp_path, args, message):
    args = tuple(str(tmp_path / a) if a.startswith("OUT") else a for a in args)
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_models_sign_trusts_registered_artifacts_whose_bytes_match_and_refuses_the_rest(sluice_home, tmp_path):
    import hashlib

    from flows.common import engine_for
    from scoring.models import train_model
    from scoring.registry import load_model, save_model, signature_path
    from store.registry import register_model

    engine = engine_for(None)
    model = train_model(["good match", "bad weather", "good goal", "rainy weather"] * 3,
                        ["sport", "weather", "sport", "weather"] * 3, kind="text")
    saved = save_model(model, tmp_path / "models")
    register_model(engine, {"version": saved.version, "kind": "text", "artifact_path": str(saved.path),
                            "sha256": saved.sha256, "classes": ["sport", "weather"], "metrics": {}, "train_size": 12})
    signature_path(saved.path).unlink()  # an artifact from before signing
    result = invoke("models", "sign")
    assert result.exit_code == 0 and "1 artifact(s) signed, 0 refused" in result.output
    assert load_model(saved.path, sha256=saved.sha256).classes_.tolist() == ["sport", "weather"]
    saved.path.write_bytes(saved.path.read_bytes() + b"\0")  # altered since it was registered
    signature_path(saved.path).unlink()
    refused = invoke("models", "sign")
    assert refused.exit_code == 1 and f"not signed: {saved.version}" in refused.output
    assert not signature_path(saved.path).exists()
    assert hashlib.sha256(saved.path.read_bytes()).hexdigest() != saved.sha256


def test_labelstudio_queue_lists_waiting_tasks_by_project_reason_and_age(sluice_home, dataset_files):
    from tests.flows.seeded import seed_and_route

    seed_and_route(*dataset_files)
    result = invoke("labelstudio", "queue")
    assert result.exit_code == 0, result.output
    assert "Sluice review queue" in result.output and "not pushed yet" in result.output
    lines = [line for line in result.output.splitlines() if "│" in line and "not pushed yet" in line]
    reasons = [line.split("│")[2].strip() for line in lines]
    assert "audit" in reasons and "margin" in reasons
    assert reasons.index("audit") < reasons.index("margin")  # in the order annotators get them


@pytest.mark.integration
def test_sluice_ui_answers_only_its_own_host_names_and_sigterm_leaves_nothing_behind(tmp_path):
    """`sluice ui` refuses a request naming another host (DNS rebinding) before Streamlit sees it: pages, API and the
    websocket; the loopback names and SLUICE_UI_ALLOWED_HOSTS are served. It becomes the Streamlit server (same
    pid): SIGTERM stops the server itself, and the port is free."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from tests.labelstudio_fixture import free_port

    def status(path: str, host: str, **headers: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **headers})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    port = free_port()
    env = {**os.environ, "SLUICE_HOME": str(tmp_path / "home"), "SLUICE_UI_ALLOWED_HOSTS": "console.example.org"}
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the console never listened")
        deadline = time.monotonic() + 30
        while status("/_stcore/health", f"127.0.0.1:{port}") != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        served = {host: status("/_stcore/health", host)
                  for host in (f"127.0.0.1:{port}", f"localhost:{port}", "console.example.org")}
        assert served == dict.fromkeys(served, 200)
        refused = {path: status(path, "rebound.example.net") for path in ("/", "/_stcore/health", "/overview")}
        assert refused == dict.fromkeys(refused, 400)
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        assert status("/_stcore/stream", "rebound.example.net", **upgrade) == 400
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        time.sleep(0.5)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "something still listens on the console's port"
        leftover = subprocess.run(["pgrep", "-f", f"server.port {port}"], capture_output=True, text=True).stdout
        assert leftover.strip() == ""
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def test_a_malformed_console_host_name_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("SLUICE_UI_ALLOWED_HOSTS", "ok.example.org, http://x/")
    result = invoke("ui", "--port", "1")
    assert result.exit_code != 0 and "not a host name" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("content", "message"), [
    (b'{"id": "a", "label": "x"}\n{"id": \n', "bad.jsonl:2: not a JSON object"),
    (b'{"id": "a", "label": "' + b"y" * 70_000 + b'"}\n', "bad.jsonl:1: a label line longer than 65,536 bytes"),
    ("id,label\na,x\n".encode("utf-16"), "bad.jsonl:1: not UTF-8 text"),
])
def test_a_bad_labels_file_is_a_one_line_error_and_stores_nothing(sluice_home, tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    result = invoke("seed-labels", str(path))
    output = flat(result.output)
    assert result.exit_code == 1 and message in output and output.endswith("nothing was stored")
    assert "Traceback" not in output
