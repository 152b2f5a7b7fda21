#!/usr/bin/env bash
# Shows the issue-9 cancel defect on the code before the fix (commit 1f416ab): with psutil the
# blocking terminate holds the caller > 1 s; without psutil the launcher's child survives.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=$(mktemp -d); mkdir -p "$OLD/InterSliceSRLib"; touch "$OLD/InterSliceSRLib/__init__.py"
git show 1f416ab:InterSliceSR/InterSliceSRLib/engine_process.py > "$OLD/InterSliceSRLib/engine_process.py"
git show 1f416ab:InterSliceSR/InterSliceSRLib/progress.py > "$OLD/InterSliceSRLib/progress.py"
for mode in psutil no-psutil; do OLD_LIB=$OLD .venv/bin/python scripts/checks/old_cancel.py $mode; done
rm -rf "$OLD"
