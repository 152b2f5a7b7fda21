"""The runs whose outputs must not change when the code is reorganised (see test_unchanged.py).

`python Testing/unchanged_cases.py --record` re-records Testing/data/unchanged_outputs.json; do
that only for an intended behaviour change, and say so in the commit.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
RECORD = HERE / "data" / "unchanged_outputs.json"
N_PROBES = 256


def _inputs(folder: Path) -> dict[str, Path]:
    """Two small real volumes cut from the sample, one with its slice axis along y."""
    sys.path.insert(0, str(HERE))
    from conftest import SAMPLE, oblique_direction, sample_crop

    crop = folder / "crop_z.nrrd"
    sitk.WriteImage(sample_crop((56, 52, 16), (36, 38, 22)), str(crop))
    image = sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)
    roi = sitk.RegionOfInterest(image, [40, 60, 40], [44, 34, 11])
    thick = sitk.Resample(roi, [40, 20, 40], sitk.Transform(), sitk.sitkLinear,
                          roi.GetOrigin(), (2.0, 6.0, 3.0), oblique_direction(), 0.0)
    sideways = folder / "oblique_y.nii.gz"
    sitk.WriteImage(thick, str(sideways))
    return {"sample": SAMPLE, "crop_z": crop, "oblique_y": sideways}


CASES = {  # name: (input, extra run arguments)
    "demo_adapt20": ("sample", ["--adapt-steps", "20", "--seed", "0", "--backend", "torch"]),
    "crop_z_shipped_ort": ("crop_z", ["--no-adapt", "--backend", "onnxruntime"]),
    "oblique_y_adapt10_box": ("oblique_y", ["--adapt-steps", "10", "--seed", "1",
                                            "--profile", "box", "--factor", "3"]),
}


def run_case(name: str, folder: Path) -> Path:
    source, extra = CASES[name]
    inputs = _inputs(folder)
    out = folder / f"{name}.nrrd"
    cmd = [sys.executable, "-m", "intersr", "run", str(inputs[source]), str(out),
           "--progress", "none", "--device", "cpu", *extra]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def fingerprint(path: Path) -> dict:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    probes = np.random.default_rng(0).integers(0, array.size, N_PROBES)
    return {
        "size": list(image.GetSize()),
        "spacing": [round(v, 9) for v in image.GetSpacing()],
        "origin": [round(v, 6) for v in image.GetOrigin()],
        "direction": [round(v, 9) for v in image.GetDirection()],
        "pixel_type": image.GetPixelIDTypeAsString(),
        "mean": float(array.mean()), "std": float(array.std()),
        "range": [float(array.min()), float(array.max())],
        "probes": [float(v) for v in array.ravel()[probes]],
        "sha256": hashlib.sha256(sitk.GetArrayFromImage(image).tobytes()).hexdigest(),
    }


def main() -> None:
    import tempfile

    assert "--record" in sys.argv, "usage: python Testing/unchanged_cases.py --record"
    RECORD.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        record = {name: fingerprint(run_case(name, Path(tmp))) for name in CASES}
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded {', '.join(record)} in {RECORD}")


if __name__ == "__main__":
    main()
