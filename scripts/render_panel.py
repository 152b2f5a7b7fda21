#!/usr/bin/env python3
"""Render the module panel OFFSCREEN with real Qt widgets (stand-ins only for the Slicer/CTK
classes). These are not Slicer screenshots, and each says so:

- Resources/Screenshots/InterSliceSR-panel-offscreen-Qt-render.png (README, docs/slicer.md and
  the Extensions Index screenshot until a real Slicer one is taken, docs/slicer.md "Before a
  release"): the panel on first use (the embedded sample selected, no PyTorch yet: the main
  button offers the quick result) beside the benchmark's result image, with a caption in the image itself saying that it
  is an offscreen Qt render and not a Slicer screenshot (the index shows no caption).
Run: QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/render_panel.py
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "InterSliceSR", ROOT / "Testing", ROOT / "Testing" / "helpers"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PANEL = ROOT / "bench-out" / "slicer-panel-offscreen.png"  # an intermediate, not committed
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "InterSliceSR-panel-offscreen-Qt-render.png"
BENCH = ROOT / "docs" / "images" / "bench_brain_t2_stroke_z_x4.png"
CAPTION = ("Offscreen Qt render of the InterSliceSR module panel (the module's .ui with real Qt widgets, "
           "stand-ins for Slicer's own widget classes), first use, embedded sample selected: "
           "not a Slicer screenshot.")
BENCH_CAPTION = ("Benchmark result image (README, docs/benchmarks.md): a held-out brain T2 made thick (x4), "
                 "the same through-plane slice: reference | B-spline | oracle deconvolution | InterSliceSR.")


def render_panel(path):
    import panel_qt
    from test_slicer_qt_panel import build_rendered_panel

    ui = panel_qt.load_panel()
    build_rendered_panel(ui, first_use=True)
    out = panel_qt.render(ui, path)
    ui.deleteLater()
    return out


def compose(path, panel_path=None):
    """The panel render beside the benchmark image, each captioned, on one canvas."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QFont, QImage, QPainter

    panel_path = panel_path or render_panel(Path(path).with_name("panel-for-screenshot.png"))
    panel, bench = QImage(str(panel_path)), QImage(str(BENCH))
    margin, caption_h = 16, 64
    bench = bench.scaledToWidth(900, Qt.SmoothTransformation)
    width = margin * 3 + panel.width() + bench.width()
    height = margin * 2 + caption_h + max(panel.height(), bench.height() + caption_h)
    canvas = QImage(width, height, QImage.Format_RGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    font = QFont()
    font.setPointSize(11)
    painter.setFont(font)
    painter.setPen(QColor("black"))
    flags = int(Qt.AlignLeft | Qt.AlignVCenter | Qt.TextWordWrap)
    painter.drawText(QRect(margin, margin, width - 2 * margin, caption_h), flags, CAPTION)
    top = margin + caption_h
    painter.drawImage(margin, top, panel)
    left = margin * 2 + panel.width()
    painter.drawImage(left, top, bench)
    painter.drawText(QRect(left, top + bench.height() + 8, bench.width(), caption_h), flags, BENCH_CAPTION)
    painter.end()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert canvas.save(str(path), "PNG"), path
    if Path(panel_path).name == "panel-for-screenshot.png":
        Path(panel_path).unlink()
    return path


if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    PANEL.parent.mkdir(exist_ok=True)
    render_panel(PANEL)
    print(compose(SCREENSHOT, PANEL))
