"""Shipped weights: a manifest (weights.json) names each file with its sha256 and config.

Loading verifies the checksum, so a truncated download or a stale file fails loudly instead of
silently producing worse images.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import WeightsError
from ..resources import MANIFEST, manifest_entry, models_dir, sha256_of, verified
from .export import export_onnx
from .network import NetConfig, build_network

__all__ = ["Pretrained", "load_pretrained", "save_weights", "models_dir", "sha256_of"]


@dataclass
class Pretrained:
    model: torch.nn.Module
    config: NetConfig
    sha256: str  # "" when starting from scratch
    name: str


def load_pretrained(path: str | os.PathLike | None = None,
                    config: NetConfig | None = None) -> Pretrained | None:
    """The shipped network (path None), the one at `path`, or None for path "none".

    path: a weights file listed in the manifest beside it, or a folder holding weights.json.
    Missing or altered weights raise WeightsError: never a silent run from scratch.
    """
    if path is not None and str(path).lower() == "none":
        return None
    folder = Path(path) if path is not None else models_dir()
    if folder.is_file():
        folder, wanted = folder.parent, folder.name
    elif path is not None and not folder.exists():
        raise WeightsError(f"--weights {path}: no such file or folder")
    else:
        wanted = None
    try:
        entry = manifest_entry(folder, wanted)
        file = verified(folder, entry["file"], entry["sha256"])
        net_config = NetConfig(**entry["config"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"weights manifest {folder / 'weights.json'} is malformed "
                           f"({type(exc).__name__}: {exc}); reinstall intersr") from None
    if config is not None and config.design != net_config.design:
        raise WeightsError(f"shipped weights are for design {net_config.design!r}, "
                           f"not {config.design!r}")
    try:
        model = build_network(net_config)
        state = torch.load(file, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as exc:  # a consistent manifest naming a file of another network
        raise WeightsError(f"weights file {file} does not fit the network its manifest "
                           f"describes ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
                           ) from None
    return Pretrained(model=model, config=net_config, sha256=entry["sha256"], name=entry["file"])


def save_weights(model: torch.nn.Module, config: NetConfig, folder: Path, file: str,
                 extra: dict | None = None, half: bool = True, onnx: bool | None = None) -> str:
    """Write weights (fp16 to keep the extension small) and update the manifest entry.

    onnx: also write the ONNX export (of exactly these fp16-rounded weights) with its sha256;
    None = when writing the shipped models folder, so re-shipped weights never leave a stale
    ONNX file behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    target = folder / file
    temp = target.with_suffix(".partial")
    torch.save(state, temp)
    os.replace(temp, target)
    digest = sha256_of(target)
    entry = {"file": file, "sha256": digest, "config": config.to_dict(), **(extra or {})}
    if onnx or (onnx is None and folder.resolve() == models_dir().resolve()):
        entry["onnx"] = write_onnx(state, config, folder, Path(file).with_suffix(".onnx").name,
                                   digest)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"weights": []}
    manifest["weights"] = [e for e in manifest["weights"] if e["file"] != file]
    manifest["weights"].append(entry)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return digest


def write_onnx(state: dict, config: NetConfig, folder: Path, file: str, source_sha256: str) -> dict:
    """Export the network with `state` (as loaded: fp16 -> fp32) to ONNX; its manifest entry."""
    model = build_network(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    path = export_onnx(model, folder / file)
    return {"file": file, "sha256": sha256_of(path), "source_sha256": source_sha256,
            "opset": 17, "inputs": "lr (B,1,n,W), positions (m,), factor (), blur ()"}


def reexport_onnx(folder: Path | None = None) -> dict:
    """(Re-)export the shipped weights of `folder`'s manifest to ONNX and record it there."""
    folder = folder or models_dir()
    entry = manifest_entry(folder)
    path = verified(folder, entry["file"], entry["sha256"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    onnx = write_onnx(state, NetConfig(**entry["config"]), folder,
                      Path(entry["file"]).with_suffix(".onnx").name, entry["sha256"])
    manifest = json.loads((folder / MANIFEST).read_text())
    for item in manifest["weights"]:
        if item["file"] == entry["file"]:
            item["onnx"] = onnx
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return onnx


if __name__ == "__main__":
    import sys
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(reexport_onnx(target))
