"""DICOM in and out through `intersr run`: the scanner's slice thickness is used and said, and
a DICOM output is a DERIVED\\SECONDARY series of the same study, with the NRRD output's grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import oblique_direction, sample_crop
from intersr.cli import app as cli
from intersr.volumes import dicom_write
from test_cli import write_dicom_series

STUDY = "1.2.826.0.1.3680043.2.1125.1.4242.1"  # what write_dicom_series gives the study
PATIENT = {"0010|0010": "Doe^Jane", "0010|0020": "IS-27", "0010|0030": "19700101",
           "0010|0040": "F", "0008|103e": "T1 AX thick"}


def read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def headers(folder: Path) -> list:
    files = sorted(folder.iterdir())
    return sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))


def assert_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


@pytest.fixture(scope="module")
def dicom_input(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in") / "series"
    write_dicom_series(sample_crop((24, 24, 8), (50, 50, 24)), folder, thickness=2.4,
                       extra=PATIENT)
    for path in folder.iterdir():  # GDCM writes the 2-D spacing there: set the scanner's value
        ds = pydicom.dcmread(path)
        ds.SpacingBetweenSlices = "3.0"
        ds.save_as(path)
    return folder


def test_dicom_in_and_out_same_study_new_series_same_grid(tmp_path, dicom_input, capsys):
    nrrd, out = tmp_path / "iso.nrrd", tmp_path / "iso-dicom"
    before = sorted(p.name for p in dicom_input.iterdir())
    assert cli.main(["run", str(dicom_input), str(nrrd), "--no-adapt", "--progress", "none"]) == 0
    err = capsys.readouterr().err
    # the header's thickness is used and said, with the spacing between slices
    assert "SliceThickness 2.4 mm, SpacingBetweenSlices 3 mm" in err
    assert "'T1 AX thick'" in err and "(as --thickness)" in err
    assert cli.main(["run", str(dicom_input), str(out) + "/", "--no-adapt",
                     "--progress", "none"]) == 0
    assert "patient and study tags are empty" not in capsys.readouterr().err
    assert sorted(p.name for p in dicom_input.iterdir()) == before  # the input is untouched
    reference = sitk.ReadImage(str(nrrd))
    assert float(reference.GetMetaData("intersr_thickness_mm")) == pytest.approx(2.4)
    series = read_series(out)
    assert_same_grid(series, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(series), sitk.GetArrayFromImage(reference))

    slices = headers(out)
    assert len(slices) == reference.GetSize()[2] == 12
    source = pydicom.dcmread(next(dicom_input.iterdir()))
    uids = {d.SeriesInstanceUID for d in slices}
    assert len(uids) == 1 and source.SeriesInstanceUID not in uids
    assert len({d.SOPInstanceUID for d in slices}) == len(slices)
    for k, d in enumerate(slices):
        assert list(d.ImageType) == ["DERIVED", "SECONDARY"]
        assert d.SeriesDescription == "T1 AX thick - InterSliceSR synthesised"
        assert "not acquired" in d.DerivationDescription
        assert "weights_sha256=" in d.DerivationDescription
        assert d.StudyInstanceUID == STUDY
        assert (str(d.PatientName), d.PatientID, d.PatientBirthDate, d.PatientSex) == \
            ("Doe^Jane", "IS-27", "19700101", "F")
        np.testing.assert_allclose([float(v) for v in d.ImagePositionPatient],
                                   reference.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-4)
        np.testing.assert_allclose([float(v) for v in d.ImageOrientationPatient],
                                   [1, 0, 0, 0, 0, 1], atol=1e-6)
        assert [float(v) for v in d.PixelSpacing] == [2.0, 2.0]
        assert float(d.SliceThickness) == pytest.approx(reference.GetSpacing()[2]) == 2.0


def test_non_dicom_input_oblique_float_warns_and_round_trips(tmp_path, capsys):
    image = sitk.Cast(sample_crop((20, 20, 6), (50, 50, 24)), sitk.sitkFloat32) * 0.37
    image.SetDirection(oblique_direction())
    source = tmp_path / "thick.nrrd"
    sitk.WriteImage(image, str(source))
    nrrd, out = tmp_path / "iso.nrrd", tmp_path / "out"
    assert cli.main(["run", str(source), str(nrrd), "--no-adapt", "--progress", "none"]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(source), str(out), "--output-format", "dicom", "--no-adapt",
                     "--progress", "none"]) == 0
    assert "patient and study tags are empty" in capsys.readouterr().err
    reference, series = sitk.ReadImage(str(nrrd)), read_series(out)
    assert_same_grid(series, reference)
    values = sitk.GetArrayFromImage(reference)
    slope = (values.max() - values.min()) / 65535
    np.testing.assert_allclose(sitk.GetArrayFromImage(series), values, atol=slope)
    first = headers(out)[0]
    assert str(first.PatientName) == "" and first.PatientID == ""
    assert first.SeriesDescription == "thick - InterSliceSR synthesised"
    assert "patient and study tags are empty" in first.DerivationDescription


def test_dicom_output_refusals_leave_nothing(tmp_path, dicom_input, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert cli.main(["run", str(dicom_input), str(full) + "/", "--no-adapt",
                     "--progress", "none"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    # the input folder itself
    count = len(list(dicom_input.iterdir()))
    assert cli.main(["run", str(dicom_input), str(dicom_input.parent) + "/", "--no-adapt",
                     "--progress", "none"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert len(list(dicom_input.iterdir())) == count
    # a parent that does not exist
    assert cli.main(["run", str(dicom_input), str(tmp_path / "no" / "such") + "/", "--no-adapt",
                     "--progress", "none"]) == 2
    assert "parent does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_dicom_write_failure_midway_leaves_nothing(tmp_path, dicom_input, capsys, monkeypatch):
    written = []
    real_save = dicom_write._save

    def failing(pydicom_module, ds, path):
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        written.append(path)
        real_save(pydicom_module, ds, path)

    monkeypatch.setattr(dicom_write, "_save", failing)
    out = tmp_path / "out"
    assert cli.main(["run", str(dicom_input), str(out) + "/", "--no-adapt",
                     "--progress", "none"]) == 5
    assert "No space left on device" in capsys.readouterr().err
    assert len(written) == 3  # it did start writing
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin


def test_empty_existing_folder_is_filled(tmp_path, dicom_input):
    out = tmp_path / "empty"
    out.mkdir()
    assert cli.main(["run", str(dicom_input), str(out), "--output-format", "dicom",
                     "--no-adapt", "--progress", "none"]) == 0
    assert len(list(out.iterdir())) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
