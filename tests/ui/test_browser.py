"""The console in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, `make chromium`) against
the console as `sluice ui` serves it on 127.0.0.1, over a store the real flows filled. What a person does: sign in, edit a
segment's target, see the change and its preview, apply with a comment, find the new version in the history,
roll back, and, as a viewer, find nothing to edit. Waits are Playwright's `expect`, never sleeps."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long passphrase"
SCREENSHOTS = os.environ.get("SLUICE_CONSOLE_SCREENSHOTS")  # a folder: save a picture of each page there


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def filled_home(tmp_path_factory, prefect_harness) -> Iterator[Path]:
    """A store brought through a routed cycle by real flow runs, with two accounts."""
    from store.accounts import add_account
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route
    from tests.ui.conftest import sluice_environment

    home = tmp_path_factory.mktemp("console-home")
    with sluice_environment(home):
        items, labels = write_files(home, make_dataset(900, seed=3))
        # 200 held-out seed labels: enough for Learn-then-Test to certify a threshold for a loose target
        engine, _ = seed_and_route(items, labels, seed_count=400)
        for name, role in (("ana", "operator"), ("vic", "viewer")):
            add_account(engine, name, role=role, password=PASSWORD)
    yield home


@pytest.fixture(scope="module")
def console(filled_home) -> Iterator[str]:
    """The console on a free 127.0.0.1 port, started by the command `sluice ui` runs; stopped by its pid."""
    from flows.cli import console_command

    port = _free_port()
    env = {**os.environ, "SLUICE_HOME": str(filled_home)}
    env.pop("SLUICE_DATABASE_URL", None)
    process = subprocess.Popen(console_command(port), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the console did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is missing: run `make chromium` (scripts/ensure-chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # a shared 2-core machine: the app's runs take seconds, not milliseconds
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (its status widget gone)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)


def sign_in(page, url: str, name: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in to Sluice")).to_be_visible(timeout=60_000)
    page.get_by_label("Account").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)
    expect(page).to_have_url(re.compile(r"/overview$"))
    settle(page)


def shoot(page, name: str) -> None:
    from playwright.sync_api import expect

    if SCREENSHOTS:
        expect(page.get_by_test_id("stSkeleton")).to_have_count(0)
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def fresh(page, segment: str):
    """The Policy page's fields of `segment` from the newest run (not the previous run's, still on screen)."""
    return page.locator(f".st-key-rules-{segment}").locator(
        '[data-testid="stElementContainer"][data-stale="false"]')


def set_number(page, label: str, value: str, *, segment: str) -> None:
    field = fresh(page, segment).get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")  # leaving the field commits it: the app runs again
    settle(page)


def test_an_operator_edits_a_target_applies_it_and_rolls_it_back(page, console, filled_home):
    from playwright.sync_api import expect

    from store.db import get_engine
    from store.policies import stored_policy

    first = stored_policy(get_engine(f"sqlite:///{filled_home / 'sluice.db'}", migrate_first=False)).version
    sign_in(page, console, "ana")
    shoot(page, "overview")
    page.get_by_role("link", name="Policy").click()
    expect(page.get_by_role("heading", name="Policy", exact=True)).to_be_visible()
    settle(page)
    page.get_by_role("combobox", name="Segment").click()
    page.get_by_role("option", name="default", exact=True).click()
    settle(page)
    set_number(page, "Max auto-accept error", "0.300", segment="default")
    expect(page.get_by_text("max_auto_error")).to_be_visible()  # the change, field by field
    preview = page.get_by_test_id("stTable").nth(1)  # under the change: active and new rules side by side
    expect(preview).to_contain_text("new")
    rows = preview.locator("tbody tr")
    active_row, new_row = ([cell.strip() for cell in rows.nth(i).locator("td, th").all_inner_texts()] for i in (0, 1))
    assert active_row[:2] == ["default", "active"] and new_row[:2] == ["default", "new"]
    assert active_row[2:4] != new_row[2:4], (active_row, new_row)  # a looser target: threshold and automation move
    shoot(page, "policy-edit")
    apply = page.get_by_role("button", name="Apply")
    expect(apply).to_be_disabled()  # a comment first
    page.get_by_label("Why (required)").fill("looser target on default")
    page.get_by_label("Why (required)").press("Control+Enter")
    settle(page)
    apply.click()
    expect(page.get_by_text("the next route run uses it")).to_be_visible()
    history = page.get_by_test_id("stTable").last
    expect(history).to_contain_text("looser target on default")
    shoot(page, "policy-history")

    rollback = page.get_by_test_id("stForm")
    expect(rollback.get_by_role("combobox", name="Roll back to version")).to_have_value(first)  # the one before
    rollback.get_by_label("Why (required)").fill("back to the default")
    rollback.get_by_role("button", name="Roll back").click()
    expect(page.get_by_text(f"Rolled back to {first} as change 3.")).to_be_visible()
    expect(page.get_by_test_id("stTable").last).to_contain_text("back to the default")
    assert stored_policy(get_engine(f"sqlite:///{filled_home / 'sluice.db'}", migrate_first=False)).version == first


def test_a_viewer_cannot_edit(page, console):
    from playwright.sync_api import expect

    sign_in(page, console, "vic")
    page.get_by_role("link", name="Policy").click()
    expect(page.get_by_text("signed in as a viewer")).to_be_visible()
    expect(fresh(page, "defaults").get_by_label("Max auto-accept error", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Apply")).to_have_count(0)
    expect(page.get_by_role("button", name="Roll back")).to_have_count(0)
