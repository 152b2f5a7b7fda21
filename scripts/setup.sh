#!/usr/bin/env bash
# Create .venv with the engine (editable). `bash scripts/setup.sh test` adds what the tests
# need (pytest, the pinned slicer-core wheel). Idempotent.
# torch is pinned to 2.13.0: on the project's machines that is a local CPU build; any other
# version pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[torch${1:+,$1}]"
