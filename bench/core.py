"""Targets 1 and 2: the NumPy core against PyTorch autograd and against a hand-written floor."""

from __future__ import annotations

import numpy as np
import torch

from service.core import compute_gradients

from .cases import ALL, LARGE, Case
from .timing import budget_repeats, interleaved

torch.set_num_threads(1)


def floor(problem):
    """The least any implementation must do: forward, mse, backward; no checks, no generality."""
    a, zs, outs = problem.inputs, [], [problem.inputs]
    for layer in problem.layers:
        z = a @ layer.weights + layer.biases
        a = np.maximum(z, 0.0) if layer.activation == "relu" else z
        zs.append(z)
        outs.append(a)
    dz = (2.0 / problem.targets.size) * (a - problem.targets)
    grads = []
    for i in range(len(problem.layers) - 1, -1, -1):
        grads.append((outs[i].T @ dz, dz.sum(axis=0)))
        if i:
            dz = (dz @ problem.layers[i].weights.T) * (zs[i - 1] > 0)
    return grads


def torch_autograd(problem):
    params = [
        (torch.tensor(l.weights, requires_grad=True), torch.tensor(l.biases, requires_grad=True))
        for l in problem.layers
    ]
    x, y = torch.from_numpy(problem.inputs), torch.from_numpy(problem.targets)

    def run():
        for w, b in params:
            w.grad = b.grad = None
        a = x
        for (w, b), layer in zip(params, problem.layers):
            z = a @ w + b
            a = torch.relu(z) if layer.activation == "relu" else z
        torch.nn.functional.mse_loss(a, y).backward()

    return run


def gemm_flops_per_second(case: Case) -> float:
    """What numpy's matmul sustains here on the large case's biggest product."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(case.batch, 512)), rng.normal(size=(512, 512))
    stats = interleaved({"gemm": lambda: a @ b}, repeats=15, inner=3)["gemm"]
    return 2 * case.batch * 512 * 512 / stats.median


def run(report) -> None:
    for case in ALL:
        if case.name == "small":
            continue
        problem = case.problem()
        repeats, inner = budget_repeats(case.name)
        stats = interleaved(
            {
                "core": lambda: compute_gradients(problem),
                "torch": torch_autograd(problem),
                "floor": lambda: floor(problem),
            },
            repeats,
            inner,
        )
        report.figure(f"core {case.name}", stats["core"])
        report.figure(f"torch autograd {case.name}", stats["torch"])
        report.figure(f"hand-written floor {case.name}", stats["floor"])
        report.ratio(
            f"1. core / torch, {case.name}", stats["core"].median / stats["torch"].median, 1.0
        )
        target = 1.15 if case.name in ("medium", "large") else None
        report.ratio(
            f"2. core / floor, {case.name}", stats["core"].median / stats["floor"].median, target
        )
        if case is LARGE:
            efficiency = case.flops() / stats["core"].median / gemm_flops_per_second(case)
            report.ratio("2. core FLOP/s / numpy GEMM FLOP/s, large", efficiency, 0.70, higher=True)
