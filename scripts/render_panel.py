#!/usr/bin/env python3
"""Render the module panel OFFSCREEN with real Qt widgets (stand-ins only for the Slicer/CTK
classes) to docs/images/slicer-panel-offscreen.png. This is not a Slicer screenshot.
Run: QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/render_panel.py
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "InterSliceSR", ROOT / "Testing", ROOT / "Testing" / "helpers"):
    sys.path.insert(0, str(path))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

import panel_qt  # noqa: E402
from test_slicer_qt_panel import build_rendered_panel  # noqa: E402

if __name__ == "__main__":
    app = QApplication.instance() or QApplication([])
    ui = panel_qt.load_panel()
    build_rendered_panel(ui)
    out = panel_qt.render(ui, ROOT / "docs" / "images" / "slicer-panel-offscreen.png")
    print(out)
