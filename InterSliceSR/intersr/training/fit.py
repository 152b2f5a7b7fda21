"""The training loop: batches made ahead by worker processes, checkpoints every 200 steps,
`--resume` from them, the best weights kept."""
from __future__ import annotations

import math
import multiprocessing
import pickle
import signal
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..acquisition.pairs import PairBatch
from ..errors import CANCEL_SIGNALS, InputError, WeightsError
from ..networks.network import NetConfig, build_network
from ..progress import Progress

# ---------------------------------------------------------------- the loop
_SOURCE = None  # (make_batch, source, batch size, extra keywords): set before workers fork


def set_source(make_batch, source, batch: int, extra: dict) -> None:
    """What every step's batches are drawn from; set before the workers fork, so they inherit it."""
    global _SOURCE
    _SOURCE = (make_batch, source, batch, extra)


def step_batches(step: int, seed: int, accumulate: int) -> list[PairBatch]:
    """The batches of one step. Each comes from its own generator seeded by (seed, step, j),
    so a run's data do not depend on how many worker processes made them or on resuming."""
    make_batch, source, size, extra = _SOURCE
    return [make_batch(source, size, np.random.default_rng([seed, step, j]), **extra)
            for j in range(accumulate)]


def _worker_start() -> None:
    """A batch worker is a forked copy of the training process: it must not inherit the
    command's cancel handlers (they raise `Cancelled`, and the pool stops its workers with
    SIGTERM, so every finished run printed a traceback per worker), and Ctrl-C is the
    training process's to handle, not each worker's."""
    torch.set_num_threads(1)
    for name in CANCEL_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def batches_ahead(start: int, steps: int, seed: int, accumulate: int, workers: int):
    """Each step's batches in order. With workers, the pool is forked on entry (before CUDA
    starts in this process) and makes batches at most a few steps ahead; the volumes are
    shared with the workers, not copied."""
    if workers <= 0:
        yield ((step, step_batches(step, seed, accumulate)) for step in range(start + 1, steps + 1))
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start) as pool:
        yield _in_order(pool, range(start + 1, steps + 1), seed, accumulate, 4 * workers)


def _in_order(pool, steps: range, seed: int, accumulate: int, ahead: int):
    pending: deque = deque()
    for step in steps:
        pending.append((step, pool.apply_async(step_batches, (step, seed, accumulate))))
        if len(pending) > ahead:
            done, result = pending.popleft()
            yield done, result.get()
    while pending:
        done, result = pending.popleft()
        yield done, result.get()


def fit(model: torch.nn.Module, steps: int, lr: float, checkpoint: Path, resume: bool,
        seed: int, progress: Progress, device: str = "cpu", accumulate: int = 1,
        workers: int = 0) -> dict:
    """Adam with cosine decay; checkpoint every 200 steps; resumable. A step averages the
    gradients of `accumulate` batches (each from one volume, axis and profile), which gives
    a GPU a larger and more varied step at the same learning rate."""
    state = load_state(checkpoint, "checkpoint") if resume and checkpoint.exists() else None
    start_step, seconds, history = (state["step"], state["seconds"], state["history"]) \
        if state else (0, 0.0, [])
    with batches_ahead(start_step, steps, seed, accumulate, workers) as batches:
        model.to(device).train()  # the optimizer below, and a resumed state, follow it
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        if state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            progress.log(f"resumed {checkpoint} at step {start_step}")
        t0 = time.monotonic() - seconds
        running = history[-1][1] if history else None  # a finished stage resumed runs no step
        for step, parts in batches:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for batch in parts:
                pred = model(batch.thick.to(device), batch.positions.to(device), batch.factor,
                             batch.blur)
                loss = torch.nn.functional.l1_loss(pred, batch.fine.to(device)) / len(parts)
                loss.backward()
                total += loss.item()
            optimizer.step()
            schedule.step()
            running = total if running is None else 0.98 * running + 0.02 * total
            progress.update("train", step, steps, loss=running)
            if step % 50 == 0:
                history.append((step, running))
            if step % 200 == 0 or step == steps:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "step": step,
                            "seconds": time.monotonic() - t0, "history": history},
                           checkpoint.with_suffix(".tmp"))
                checkpoint.with_suffix(".tmp").replace(checkpoint)
    model.to("cpu")
    return {"steps": steps, "seconds": round(time.monotonic() - t0, 1),
            "final_loss": running, "history": history}


def load_state(path: Path, what: str) -> dict:
    """A checkpoint or stage output as plain tensors and numbers: `weights_only=True`, so a
    crafted file cannot run code while it is unpickled."""
    if not path.is_file():
        raise InputError(f"{what} {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightsError(f"refused {what} {path}: it is not a plain tensor file (loading it "
                           f"could run code) or it is corrupted ({str(exc).splitlines()[0][:120]})"
                           ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"refused {what} {path}: it holds a {type(state).__name__}, not a "
                           "state dictionary")
    return state


def initial(args) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = build_network(NetConfig())
    if getattr(args, "init", None):
        state = load_state(Path(args.init), "--init weights")
        try:
            model.load_state_dict(state["model"] if "model" in state else state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise WeightsError(f"--init {args.init} does not hold this network's weights "
                               f"({str(exc).splitlines()[0]})") from None
    return model
