#!/usr/bin/env bash
# Set up (if needed) and run `intersr demo` on the embedded sample scan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/intersr demo "$@"
