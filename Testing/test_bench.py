"""`intersr bench` end to end on tiny real volumes (both the simulated and the real-scan mode)."""
from __future__ import annotations

import json

import SimpleITK as sitk

from conftest import sample_crop
from intersr.cli import app as cli


def test_bench_scores_all_methods_and_writes_reports(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    iso = sample_crop((40, 40, 40), (44, 44, 10))
    iso.SetSpacing((1.0, 1.0, 1.0))  # relabelled as a near-isotropic reference
    sitk.WriteImage(iso, str(data / "iso.nii.gz"))
    out = tmp_path / "out"
    assert cli.main(["bench", str(data), "--out", str(out), "--cases", "gauss_x4,gap_x4",
                     "--adapt-steps", "2", "--seeds", "2", "--crop", "32"]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert [r["case"] for r in report["results"]] == ["gauss_x4", "gap_x4"]
    assert [r["set"] for r in report["results"]] == ["matched", "mismatch"]
    for result in report["results"]:
        assert result["split"] == "seen"  # not one of the held-out volumes
        for method in ("linear", "bspline", "deconv", "intersr"):
            row = result["methods"][method]
            assert 5 < row["psnr_fg"] < 60 and 0 < row["ssim_fg"] <= 1
            assert row["seconds"] >= 0
        ours = result["methods"]["intersr"]
        assert len(ours["seeds"]) == 2 and ours["psnr_fg_spread"] >= 0
        assert ours["profile"]["shape"] in ("gauss", "box", "sinc")
    assert report["results"][1]["truth"]["header"] is None  # the gap the header does not state
    text = (out / "bench.md").read_text()
    assert "| iso | seen | gap_x4 |" in text and "self-consistency" in text
    assert (out / "iso_gap_x4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_case(tmp_path, capsys):
    assert cli.main(["bench", str(tmp_path), "--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err


def test_bench_real_mode_checks_contract_geometry(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sitk.WriteImage(sample_crop((32, 32, 10), (40, 40, 20)), str(data / "thick.nrrd"))
    out = tmp_path / "out"
    assert cli.main(["bench", str(data), "--real", "--adapt-seconds", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "real.json").read_text())
    assert len(rows) == 1 and rows[0]["same_size"] and rows[0]["geometry_error_mm"] < 1e-4
    assert rows[0]["output_size"] == [32, 32, 15]
