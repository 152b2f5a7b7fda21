#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: engine and Slicer logic (real MRML scene).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -q Testing "$@"
