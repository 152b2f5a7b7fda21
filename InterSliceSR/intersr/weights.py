"""Shipped weights: a manifest (weights.json) names each file with its sha256 and config.

Loading verifies the checksum, so a truncated download or a stale file fails loudly instead of
silently producing worse images.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WeightsError
from .network import NetConfig, build_network

MANIFEST = "weights.json"


def models_dir() -> Path:
    override = os.environ.get("INTERSR_MODELS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "Resources" / "Models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Pretrained:
    model: torch.nn.Module
    config: NetConfig
    sha256: str  # "" when starting from scratch
    name: str


def load_pretrained(path: str | os.PathLike | None = None,
                    config: NetConfig | None = None) -> Pretrained | None:
    """The shipped network, or None when no manifest exists (the caller starts from scratch).

    path: a weights file with its own manifest entry, or a folder holding weights.json.
    """
    folder = Path(path) if path is not None else models_dir()
    if folder.is_file():
        folder, wanted = folder.parent, folder.name
    else:
        wanted = None
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        if path is not None:
            raise WeightsError(f"no {MANIFEST} beside the weights in {folder}")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["weights"]
        entry = next((e for e in entries if wanted in (None, e["file"])), None)
        if entry is not None:
            file, expected = folder / entry["file"], str(entry["sha256"])
            net_config = NetConfig(**entry["config"])
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise WeightsError(f"weights manifest {manifest_path} is malformed ({type(exc).__name__}:"
                           f" {exc}); reinstall the extension or restore the file") from None
    if entry is None:
        raise WeightsError(f"{wanted} is not listed in {manifest_path}")
    if not file.exists():
        raise WeightsError(f"weights file missing: {file} (listed in {manifest_path}); "
                           "reinstall the extension or restore the file")
    digest = sha256_of(file)
    if digest != expected:
        raise WeightsError(f"weights file {file} is corrupted: sha256 {digest[:12]}... does not "
                           f"match {expected[:12]}... in {manifest_path}")
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
    return Pretrained(model=model, config=net_config, sha256=digest, name=entry["file"])


def save_weights(model: torch.nn.Module, config: NetConfig, folder: Path, file: str,
                 extra: dict | None = None, half: bool = True) -> str:
    """Write weights (fp16 to keep the extension small) and update the manifest entry."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    target = folder / file
    temp = target.with_suffix(".partial")
    torch.save(state, temp)
    os.replace(temp, target)
    digest = sha256_of(target)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"weights": []}
    manifest["weights"] = [e for e in manifest["weights"] if e["file"] != file]
    manifest["weights"].append({"file": file, "sha256": digest, "config": config.to_dict(),
                                **(extra or {})})
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return digest
