"""Pictures of every console page, for the README: serves `ui/app.py` on 127.0.0.1 over a store (by default the
demo's, `.sluice/demo`), signs in with Playwright driving Debian's Chromium, and saves one PNG a page.

    .venv/bin/python scripts/console_screenshots.py --home .sluice/demo --user ops --password sluice-demo-pass

Stops the console it started, by its process id.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"overview": "Overview", "policy": "Policy", "calibration": "Calibration", "models": "Models & cycles",
         "whatif": "What-if", "audit": "Audit"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SLUICE_HOME": str(home.resolve())}
    env.pop("SLUICE_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--client.toolbarMode", "minimal"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the console did not start within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / ".sluice" / "demo")
    parser.add_argument("--user", default="ops")
    parser.add_argument("--password", default="sluice-demo-pass")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    process, url = serve(args.home)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                      "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            expect.set_options(timeout=60_000)
            page.goto(url)
            page.get_by_label("Account").fill(args.user)
            page.get_by_label("Password", exact=True).fill(args.password)
            page.get_by_role("button", name="Sign in").click()
            for name, title in PAGES.items():  # links, not new URLs: a page load would be a new, signed-out session
                page.get_by_role("link", name=title, exact=True).click()
                expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
                expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)
                expect(page.get_by_test_id("stSkeleton")).to_have_count(0)
                page.wait_for_timeout(1500)  # charts draw after the run ends
                page.screenshot(path=str(args.out / f"{name}.png"))
                print(f"wrote {args.out / f'{name}.png'}")
            browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


if __name__ == "__main__":
    main()
