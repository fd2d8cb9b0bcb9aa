#!/usr/bin/env bash
# Fresh machine -> virtual environment with every extra -> lint, import contracts, tests.
# README's test command and .ci/run both run exactly this. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[cpu,gui,train,test]'
.venv/bin/ruff check .
.venv/bin/lint-imports
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest "$@"
