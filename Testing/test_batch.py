"""`intersr batch`: a cohort on a local pool and on a Ray cluster, a corrupt file among it,
--resume after an interruption, the BIDS derivatives layout, and outputs equal to single runs."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import intersr
from conftest import ROOT, sample_crop
from intersr.cli import app as cli
from intersr.runners import batch as batch_runner
from intersr.runners import cohort, pool

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "InterSliceSR")}
FAST = intersr.make_options(no_adapt=True, device="cpu")
AUTO = intersr.make_options(no_adapt=True)
STARTS = [(40, 40, 20), (60, 50, 30), (50, 60, 40), (45, 55, 26)]


def crop(index: int) -> sitk.Image:
    return sample_crop((24, 24, 8), STARTS[index])


def make_study(root: Path, volumes: int = 3, corrupt: bool = True) -> Path:
    """A nested folder: NRRD, NIfTI and MHA crops of the sample, a corrupt NIfTI, a note."""
    names = ["s1/a.nrrd", "s1/b.nii.gz", "s2/c.mha", "s2/d.nrrd"][:volumes]
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(crop(i), str(root / name))
    if corrupt:
        (root / "s2").mkdir(parents=True, exist_ok=True)
        (root / "s2" / "broken.nii.gz").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("not a volume")
    return root


def check_study_outputs(out: Path, rows: list[dict], options=FAST) -> None:
    by_input = {Path(r["input"]).name: r for r in rows}
    assert by_input["broken.nii.gz"]["status"] == "failed"
    assert "cannot read" in by_input["broken.nii.gz"]["error"]
    assert not (out / "s2" / "broken.nii.gz").exists()
    for rel in ("s1/a.nrrd", "s1/b.nii.gz", "s2/c.mha"):
        row = by_input[Path(rel).name]
        assert row["status"] == "done" and row["error"] == "", row
        assert row["slice_axis"] == "z" and float(row["factor"]) == pytest.approx(1.5)
        assert row["profile"] and float(row["seconds"]) > 0
        assert sitk.ReadImage(str(out / rel)).GetSize() == (24, 24, 12)
        sidecar = json.loads(cohort.sidecar_path(out / rel).read_text())
        assert sidecar["InterSliceSR"]["options"] == batch_runner.run_options_text(options)
    assert not list(out.rglob(".intersr-*"))  # no partial outputs


def test_local_pool_processes_a_folder_and_reports_the_corrupt_file(tmp_path, capsys):
    study, out = make_study(tmp_path / "study"), tmp_path / "out"
    code = cli.main(["batch", str(study), str(out), "--no-adapt", "--device", "cpu",
                     "--workers", "2", "--report", str(out / "report.csv"),
                     "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 6, err  # some failed: documented exit code, the rest written
    assert "1 of 4 volumes failed" in err and "broken.nii.gz" in err
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == batch_runner.REPORT_COLUMNS and len(rows) == 4
    check_study_outputs(out, rows)


def test_ray_cluster_processes_a_folder_and_reports_the_corrupt_file(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                              "'intersr[ray]'); it has no wheel for some platforms")
    study, out = make_study(tmp_path / "study"), tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # device auto: a task asks for a GPU only where the cluster has one (else Ray would
        # wait forever for it)
        report = intersr.batch(study, out, AUTO, ray="auto", report=out / "report.json")
    finally:
        ray.shutdown()
    assert report.failed == 1 and report.count("done") == 3
    saved = json.loads((out / "report.json").read_text())
    assert saved["counts"] == {"done": 3, "skipped": 0, "failed": 1, "cancelled": 0}
    check_study_outputs(out, saved["volumes"], AUTO)


def test_resume_after_an_interrupted_batch_redoes_only_what_is_missing(tmp_path):
    study, out = make_study(tmp_path / "study", volumes=3, corrupt=False), tmp_path / "out"
    args = [sys.executable, "-m", "intersr", "batch", str(study), str(out), "--adapt-steps",
            "2", "--device", "cpu", "--workers", "1", "--progress", "jsonl"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    for line in proc.stdout:  # interrupt once the first volume is written
        if '"status": "done"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not list(out.rglob(".intersr-*")), "a cancelled volume left a partial output"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and cohort.volume_suffix(p))
    assert 1 <= len(written) < 3, written
    stamps = {rel: (out / rel).stat().st_mtime_ns for rel in written}

    options = intersr.make_options(adapt_steps=2, device="cpu")
    report = intersr.batch(study, out, options, workers=1, resume=True)
    status = {Path(r["output"]).relative_to(out).as_posix(): r["status"] for r in report.rows}
    assert {rel for rel, s in status.items() if s == "skipped"} == set(written)
    assert {rel for rel, s in status.items() if s == "done"} == set(status) - set(written)
    assert all((out / rel).stat().st_mtime_ns == stamps[rel] for rel in written)
    # other options (or another input) make an output stale: it is redone
    item = next(i for i in cohort.discover([study], out).items if i.key == written[0])
    text = batch_runner.run_options_text
    assert batch_runner.current_provenance(item, text(options)) is not None
    assert batch_runner.current_provenance(item, text(intersr.make_options(adapt_steps=3))) is None


def make_bids(root: Path) -> Path:
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tiny", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    anat = [root / "sub-01" / "anat" / "sub-01_T1w.nii.gz",
            root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-1_T2w.nii.gz"]
    for i, path in enumerate(anat):
        path.parent.mkdir(parents=True)
        sitk.WriteImage(crop(i), str(path))
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text('{"EchoTime": 0.01}')
    func = root / "sub-01" / "func"
    func.mkdir()
    (func / "sub-01_task-rest_bold.nii.gz").write_bytes(b"not read: not anatomical")
    return root


def test_bids_dataset_becomes_a_derivatives_dataset(tmp_path, monkeypatch):
    raw = make_bids(tmp_path / "raw")
    out = raw / "derivatives" / "intersr"
    report = intersr.batch(raw, out, FAST, workers=2)
    assert report.count("done") == 2 and len(report.rows) == 2
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "InterSliceSR" and generated["Version"] == intersr.__version__
    assert generated["CodeURL"].startswith("https://")
    expected = ["sub-01/anat/sub-01_desc-isotropic_T1w",
                "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-isotropic_T2w"]
    for stem, source in zip(expected, ["sub-01/anat/sub-01_T1w.nii.gz",
                                       "sub-02/ses-1/anat/sub-02_ses-1_run-1_T2w.nii.gz"]):
        assert sitk.ReadImage(str(out / f"{stem}.nii.gz")).GetSize() == (24, 24, 12)
        sidecar = json.loads((out / f"{stem}.json").read_text())
        assert sidecar["Sources"] == [f"bids:raw:{source}"]
        assert sidecar["InterSliceSR"]["input_sha256"] and sidecar["InterSliceSR"]["factor"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["dataset_description.json"] + sorted(
        f"{s}{x}" for s in expected for x in (".json", ".nii.gz"))
    # pybids reads the derivatives back; without pybids the same images are found
    bids = pytest.importorskip("bids", reason="pybids is not installed (intersr[bids])")
    layout = bids.BIDSLayout(str(out), validate=False)
    assert len(layout.get(desc="isotropic", extension=".nii.gz")) == 2
    found = [i.output for i in cohort.discover([raw], out).items]
    monkeypatch.setitem(sys.modules, "bids", None)
    assert [i.output for i in cohort.discover([raw], out).items] == found


def test_outputs_equal_single_runs_with_the_same_seed_and_steps(tmp_path):
    study, out = make_study(tmp_path / "study", volumes=2, corrupt=False), tmp_path / "out"
    options = intersr.make_options(adapt_steps=2, seed=3, device="cpu")
    report = intersr.batch(study, out, options, workers=2)
    assert report.count("done") == 2
    threads = pool.plan_workers(2, 2)[1]
    for rel in ("s1/a.nrrd", "s1/b.nii.gz"):
        single = tmp_path / ("single_" + Path(rel).name)
        subprocess.run([sys.executable, "-m", "intersr", "run", str(study / rel), str(single),
                        "--adapt-steps", "2", "--seed", "3", "--device", "cpu", "--threads",
                        str(threads), "--progress", "none"], env=ENV, check=True)
        a, b = (sitk.ReadImage(str(p)) for p in (out / rel, single))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()


def test_lists_and_name_collisions_and_worker_sizing(tmp_path):
    study = make_study(tmp_path / "study", volumes=2, corrupt=False)
    sitk.WriteImage(crop(3), str(study / "s1" / "a.nii.gz"))  # a.nrrd's twin name
    (tmp_path / "list.csv").write_text("subject,input\nx,study/s1/a.nrrd\ny,study/s1/b.nii.gz\n")
    items = cohort.discover([tmp_path / "list.csv"], tmp_path / "out").items
    assert [i.key for i in items] == ["a.nrrd", "b.nii.gz"]
    keys = [i.key for i in cohort.discover([study], tmp_path / "out").items]
    assert keys == ["s1/a.nii.gz", "s1/a_2.nrrd", "s1/b.nii.gz"]  # sidecars never collide
    cores = os.cpu_count() or 1
    for workers in (None, 1, 2, 4):
        count, threads = pool.plan_workers(8, workers)
        assert count * threads <= max(cores, count)
    assert pool.plan_workers(8, gpus=["0", "1"])[0] == 2  # one job per GPU
