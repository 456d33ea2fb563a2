#!/usr/bin/env python3
"""The arithmetic floor of a batched step of the book's MLP autoencoder in eager PyTorch.

    python benchmarks/bench_step_floor.py                  # R = 1, 10, 20 runs
    python benchmarks/bench_step_floor.py --runs 10 40

The autoencoder of ``bench_batched.py`` (64-64-16, mirrored, on 64 features, minibatches of 100
rows) written by hand as the fewest eager operations: per layer one ``baddbmm`` over stacked
weights, the activation, the squared error, one backward pass, and an Adam update as
``torch._fused_adam_`` (one pass over the parameters). No engine code, no model code: what no
rearrangement of vaelib's generic path can beat. Printed per R and activation (ELU as in the
benchmark, ReLU and none, to show what the activation's exp costs): the CPU time of one step
(the best of 7 repeats of 30 steps, one thread). Compare with ``bench_batched.py``'s "ms a step":
10x the loop at R = 10 needs this step within the loop's step for one run. Not part of the test
suite.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.nn import functional

SIZES = [(64, 64), (64, 16), (16, 64), (64, 64)]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu": functional.elu, "relu": functional.relu, "none": lambda h: h}


def step_function(runs: int, activation: Callable[[torch.Tensor], torch.Tensor], rows: int = 100
                  ) -> Callable[[], None]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1797, 64, generator=g)
    weights = [(torch.randn(runs, i, o, generator=g) * 0.1).requires_grad_() for i, o in SIZES]
    biases = [torch.zeros(runs, 1, o, requires_grad=True) for _, o in SIZES]
    parameters = weights + biases
    moments = [torch.zeros_like(p) for p in parameters], [torch.zeros_like(p) for p in parameters]
    steps = [torch.tensor(0.0) for _ in parameters]
    index = torch.randint(1797, (runs * rows,), generator=g)

    def step() -> None:
        xb = x.index_select(0, index).view(runs, rows, 64)
        h = xb
        for k, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if k in (0, 2):
                h = activation(h)
        loss = (xb - h).pow(2).sum(-1).mean(-1)
        loss.backward(torch.ones_like(loss))
        with torch.no_grad():
            grads = [p.grad for p in parameters]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(parameters, grads, *moments, [], steps, lr=1e-3, beta1=0.9, beta2=0.999,
                               weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
            for p in parameters:
                p.grad = None

    return step


def best_ms(step: Callable[[], None], repeats: int = 7, steps: int = 30) -> float:
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(repeats):
        cpu = time.process_time()
        for _ in range(steps):
            step()
        best = min(best, time.process_time() - cpu)
    return best / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 10, 20])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for runs in args.runs:
        figures = [f"{name} {best_ms(step_function(runs, act)):5.2f} ms" for name, act in ACTIVATIONS.items()]
        print(f"R = {runs:3d}: CPU a step, " + ", ".join(figures), flush=True)


if __name__ == "__main__":
    main()
