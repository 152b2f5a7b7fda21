"""Export the network to ONNX: dynamic sizes; positions, factor and blur are inputs.

Uses torch's TorchScript-based exporter (`dynamo=False`): it needs only torch, while the
dynamo exporter of torch 2.13 also needs `onnxscript`. Inputs: lr (B, 1, n, W) float32,
positions (m,) float32 in slab index units, factor () and blur () float32 scalars; output
(B, 1, m, W). Every dimension is dynamic, so one file serves any volume and any factor.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

OPSET = 17
INPUTS = ("lr", "positions", "factor", "blur")


class _Exported(torch.nn.Module):
    """The network with factor and blur as tensors (inputs of the graph, not constants)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lr, positions, factor, blur):
        return self.net(lr, positions, factor, blur)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write `model` (on the CPU, float32) as ONNX to `path` atomically."""
    path = Path(path)
    model = model.float().cpu().eval()
    example = (torch.rand(2, 1, 6, 16), torch.as_tensor((np.arange(15) + 0.5) / 2.5 - 0.5,
                                                        dtype=torch.float32),
               torch.tensor(2.5), torch.tensor(1.0))
    temp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                _Exported(model), example, str(temp), dynamo=False, opset_version=OPSET,
                input_names=list(INPUTS), output_names=["out"],
                dynamic_axes={"lr": {0: "planes", 2: "slabs", 3: "width"},
                              "positions": {0: "slices"},
                              "out": {0: "planes", 2: "slices", 3: "width"}})
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
