"""Seconds per training step of the VAE and the SR network with 1 and 2 torch threads.

On a CPU shared with other jobs, OpenMP threads that busy-wait for each other can make two
threads several times slower than one; compare this script's output with and without
OMP_WAIT_POLICY=PASSIVE (docs/vae.md):

    .venv/bin/python scripts/thread_step_timing.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/thread_step_timing.py
"""
from __future__ import annotations

import time

import torch

from intersr.network import NetConfig, build_network
from intersr.vae import SliceVAE


def seconds_per_step(model: torch.nn.Module, step, repeats: int = 5) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    step(model, optimizer)  # warm-up
    start = time.monotonic()
    for _ in range(repeats):
        step(model, optimizer)
    return (time.monotonic() - start) / repeats


def vae_step(model, optimizer) -> None:
    x = torch.rand(12, 1, 48, 48)  # 4 triplets of 48x48 patches, as train_vae draws
    mu, _ = model.encode(x)
    loss = (model.decode(mu) - x).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def sr_step(model, optimizer) -> None:
    lr = torch.rand(8, 1, 16, 64)  # a batch of PlanePairs at x4
    positions = (torch.arange(64) + 0.5) / 4 - 0.5
    loss = model(lr, positions, 4.0, 1.0).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


if __name__ == "__main__":
    torch.manual_seed(0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        vae = seconds_per_step(SliceVAE(), vae_step)
        sr = seconds_per_step(build_network(NetConfig()), sr_step)
        print(f"threads {threads}: VAE {vae:.3f} s/step, SR {sr:.3f} s/step", flush=True)
