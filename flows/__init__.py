"""Prefect flows over batches, and the `sluice` command line.

Importing this package sets Prefect's offline defaults (no telemetry, state under Sluice's home folder)
before Prefect itself is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(Path(os.environ.get("SLUICE_HOME", ".sluice")).resolve() / "prefect"))
# Prefect's temporary server cannot create its database inside a folder that does not exist yet.
Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
# A shared 2-core machine can take longer than Prefect's 20 s default to start its temporary server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
