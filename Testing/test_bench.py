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


def test_submm_case_thickens_an_inplane_axis_of_an_anisotropic_series():
    """A sub-mm case on a 2-D series (0.5 x 0.5 mm pixels, 2.5 mm slices): an in-plane axis is
    made 5 mm thick and is the run's slice axis; the output is scored on the 1.5 mm grid along
    it, and a filled slice along the series' own slice axis stays left out at its index."""
    import numpy as np
    from intersr.bench.cases import SUBMM_CASES
    from intersr.bench.quality import excluded_on_output, run_case
    series = sample_crop((90, 90, 12), (20, 20, 24))
    series.SetSpacing((0.5, 0.5, 2.5))
    case = SUBMM_CASES[0]
    rows = run_case(series, case, 0, (0,), "cpu", ((2, 5),), None)
    voxel = case.in_voxels(0.5)
    assert (voxel.factor, voxel.target) == (10.0, 3.0)  # 5 mm slices, asked at 1.5 mm
    for method in ("bspline", "deconv", "intersr"):
        assert 5 < rows[method]["psnr_fg"] < 60
    assert rows["intersr"]["profile"]["fwhm_voxels"] > 1  # estimated along the thick axis
    # the excluded slice along ITK z (numpy axis 0) keeps its index; along the thick axis it scales
    assert excluded_on_output(((2, 5), (0, 30)), voxel, (12, 88, 29)) == ((0, 5), (2, 10))
    assert np.isfinite(rows["intersr"]["psnr_all"])
