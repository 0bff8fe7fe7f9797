# Two entry points for a newcomer (see README): `make demo` and `make test`.
# Both create .venv on first use and install gatscale with the pinned constraints.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install notebooks clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "installing gatscale and its pinned dependencies into $(VENV) (about 6 GB, a few minutes the first time)"
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: a tiny CPU study on the digits data set, tracked in ./mlflow.db, run until
# its findings resolve (REPA, patch 2 vs 4 and the size ladder resolve; the LR cross-check says the seeds it needs;
# docs/demo.md), the LR probe at the demo's widths
# (figures/lr_probe/lr_probe.png) and its LR-law finding, the figures written to ./figures, then the study on one
# page (findings, figures drawn from the tracker, the probe's table and law, samples, run table, spec):
# figures/report.html. The printed summary ends with the findings table.
demo: $(STAMP)
	$(BIN)/gatscale sweep sweeps/demo.yaml --backend local --until-resolved
	$(BIN)/gatscale probe-lr sweeps/lr_probe_demo.yaml --max-parallel 3
	$(BIN)/gatscale findings sweeps/lr_probe_demo.yaml
	$(BIN)/gatscale figures --spec sweeps/demo.yaml --out figures
	$(BIN)/gatscale figures --spec sweeps/lr_probe_demo.yaml --out figures/lr_probe
	$(BIN)/gatscale report sweeps/demo.yaml --out figures/report.html --probe sweeps/lr_probe_demo.yaml

# JupyterLab (the `notebooks` extra) on the analysis notebooks; they read the study `make demo` wrote.
notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev,notebooks]'
	$(BIN)/jupyter lab analysis/notebooks

# The linter first ([tool.ruff] in pyproject.toml: pycodestyle, pyflakes, import order, 120 columns): a finding fails
# the target before any test runs.
test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs figures mlflow.db
