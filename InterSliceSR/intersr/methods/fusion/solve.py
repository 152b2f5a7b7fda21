"""Reconstruction: regularised least squares solved by conjugate gradients (float32 numpy).

Minimises  sum_k w_k ||W_k (A_k x - y_k)||^2 + lam ||x - x_prior||^2 + mu ||grad x||^2.
Why CG on the normal equations: the operator is symmetric positive definite, each iteration
costs one A_k and one A_k^T per stack, and 20-40 iterations from a good start suffice.
lam = 0 is the classical SRR (no learned prior).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .forward import StackOperator

Progress = Callable[[str, int, int], None]


@dataclass
class Problem:
    """Everything the solver needs; `weights` are per-slab-sample (W_k^2) arrays."""

    operators: list[StackOperator]
    data: list[np.ndarray]  # y_k, harmonised, in normalised units
    weights: list[np.ndarray]  # W_k^2 (0 = ignored); includes the validity mask
    stack_weights: list[float] = field(default_factory=list)  # w_k


def gradient_energy_op(x: np.ndarray) -> np.ndarray:
    """D^T D x for first-order differences along the three axes (zero-flux boundary)."""
    out = np.zeros_like(x)
    for axis in range(3):
        d = np.diff(x, axis=axis)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        out[tuple(lo)] -= d
        out[tuple(hi)] += d
    return out


def normal_op(problem: Problem, x: np.ndarray, lam: float, mu: float) -> np.ndarray:
    """(sum_k w_k A_k^T W_k A_k + lam I + mu D^T D) x."""
    out = np.zeros(x.size, np.float32)
    for op, w, wk in zip(problem.operators, problem.weights, problem.stack_weights):
        out += np.float32(wk) * op.adjoint(w * op.forward(x))
    out = out.reshape(x.shape)
    if lam:
        out += np.float32(lam) * x
    if mu:
        out += np.float32(mu) * gradient_energy_op(x)
    return out


def right_hand_side(problem: Problem, prior: Optional[np.ndarray], lam: float,
                    shape: tuple) -> np.ndarray:
    b = np.zeros(int(np.prod(shape)), np.float32)
    for op, y, w, wk in zip(problem.operators, problem.data, problem.weights,
                            problem.stack_weights):
        b += np.float32(wk) * op.adjoint(w * y)
    b = b.reshape(shape)
    if lam and prior is not None:
        b += np.float32(lam) * prior
    return b


def solve(problem: Problem, shape: tuple, x0: np.ndarray, *, prior: Optional[np.ndarray] = None,
          lam: float = 0.0, mu: float = 0.01, iterations: int = 30, tol: float = 1e-4,
          progress: Optional[Progress] = None, stage: str = "solve",
          info: Optional[dict] = None) -> np.ndarray:
    """Conjugate gradients on the normal equations, started from x0 (float32)."""
    if not problem.stack_weights:
        problem.stack_weights = [1.0] * len(problem.operators)
    x = np.array(x0, np.float32, copy=True).reshape(shape)
    b = right_hand_side(problem, prior, lam, shape)
    r = b - normal_op(problem, x, lam, mu)
    p = r.copy()
    rr = float(np.vdot(r, r))
    r0 = np.sqrt(float(np.vdot(b, b))) or 1.0
    done = 0
    for it in range(iterations):
        if progress:
            progress(stage, it, iterations)
        if np.sqrt(rr) / r0 < tol:
            break
        done += 1
        q = normal_op(problem, p, lam, mu)
        alpha = rr / max(float(np.vdot(p, q)), 1e-30)
        x += np.float32(alpha) * p
        r -= np.float32(alpha) * q
        rr_new = float(np.vdot(r, r))
        p *= np.float32(rr_new / max(rr, 1e-30))
        p += r
        rr = rr_new
    if progress:
        progress(stage, iterations, iterations)
    if info is not None:
        info.setdefault("iterations", []).append(done)
        info.setdefault("relative_residual", []).append(float(np.sqrt(rr) / r0))
    return x
