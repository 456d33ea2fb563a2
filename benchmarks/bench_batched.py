#!/usr/bin/env python3
"""Time R runs of the book's models trained together (``fit_batched``) against one after the other
(``fit``, the loop), in one process, for each model the book trains outside Part III's kernel case.

    python benchmarks/bench_batched.py                    # R = 10 runs, every model
    python benchmarks/bench_batched.py --runs 5 --models tied cvae

Models (the architectures of their chapters, on the chapters' data):

* ``autoencoder``: Part I's MLP autoencoder, 64-64-16 ELU, on the 8x8 digits (denoising_sparse);
* ``tied``: the tied autoencoder, 64-64-16, on the digits (deep_tied);
* ``bernoulli_vae``: the Bernoulli VAE of Part II, 784-256-2 ReLU, on the MNIST subset (vae_practice);
* ``cvae``: the CVAE, digits and their one-hot labels, 2-D code (cvae_aae).

Each model trains R runs (seeds 0..R-1) for ``--epochs`` epochs at batch size 100: first with the
loop, run after run, then with ``fit_batched(backend="torch")`` (the generic path), and where the C
kernel covers the model also with ``backend="kernel"``. One warm-up of each path (a short run, not
timed) comes first. Printed per model and path: the process's CPU time (all threads; it moves much
less with other load than the wall time) and wall time, the ratio loop / path for both, and the
largest difference of a run's final loss against the loop (the paths are exact up to float
summation order), and the CPU time of a step: one run's minibatch for the loop, all R runs'
minibatches for a batched path (10x the loop at R = 10 needs a batched step no slower than a
step of the loop). Quote the load average printed at start and end with the figures. Not part of the
test suite.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vaelib  # noqa: E402
from vaelib.data import load_digits, load_mnist_subset  # noqa: E402
from vaelib.models import append_labels  # noqa: E402


def digits() -> torch.Tensor:
    return load_digits()[0]


def digits_with_labels() -> torch.Tensor:
    x, labels = load_digits()
    return append_labels(x, labels, 10)


# name: (data, model factory, objective factory)
MODELS: dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.nn.Module], Callable[[], object]]] = {
    "autoencoder": (digits, lambda: vaelib.Autoencoder(64, 16, hidden=(64,), activation="elu"),
                    vaelib.Reconstruction),
    "tied": (digits, lambda: vaelib.TiedAutoencoder(64, 16, hidden=(64,)), vaelib.Reconstruction),
    "bernoulli_vae": (lambda: load_mnist_subset()[0],
                      lambda: vaelib.VAE(784, 2, hidden=(256,), activation="relu", decoder="bernoulli"),
                      vaelib.ELBO),
    "cvae": (digits_with_labels, lambda: vaelib.CVAE(64 + 10, 10, 2, hidden=(64,)), vaelib.ELBO),
}


def build(factory: Callable[[], torch.nn.Module], seeds: list[int]) -> list[torch.nn.Module]:
    models = []
    for seed in seeds:
        vaelib.seed_everything(seed)
        models.append(factory())
    return models


def timed(train: Callable[[], list[float]]) -> tuple[float, float, list[float]]:
    cpu, wall = time.process_time(), time.perf_counter()
    losses = train()
    return time.process_time() - cpu, time.perf_counter() - wall, losses


def bench(name: str, runs: int, epochs: int) -> None:
    data, factory, objective = MODELS[name]
    x = data()
    seeds = list(range(runs))
    settings = dict(epochs=epochs, batch_size=100, lr=1e-3, progress=False)

    def loop(seeds: list[int] = seeds, epochs: int = epochs) -> list[float]:
        return [vaelib.fit(model, objective(), x, seed=seed, **{**settings, "epochs": epochs})["loss"][-1]
                for model, seed in zip(build(factory, seeds), seeds)]

    def batched(backend: str, seeds: list[int] = seeds, epochs: int = epochs) -> list[float]:
        histories = vaelib.fit_batched(build(factory, seeds), [objective() for _ in seeds], x, seeds=seeds,
                                       backend=backend, **{**settings, "epochs": epochs})
        return [h["loss"][-1] for h in histories]

    paths: dict[str, Callable[..., list[float]]] = {"loop": loop, "generic": lambda **k: batched("torch", **k)}
    try:
        batched("kernel", seeds=seeds[:2], epochs=1)
        paths["kernel"] = lambda **k: batched("kernel", **k)
    except (ValueError, RuntimeError) as error:
        print(f"  {name}: the kernel does not train it ({str(error).splitlines()[0][:100]})")
    for path in paths.values():  # warm-up: first calls import modules and build the kernel
        path(seeds=seeds[:2], epochs=1)
    results = {label: timed(path) for label, path in paths.items()}
    loop_cpu, loop_wall, loop_losses = results["loop"]
    steps = epochs * -(-x.shape[0] // settings["batch_size"])  # minibatches per run
    print(f"{name}: {runs} runs x {epochs} epochs ({steps} steps each), x {tuple(x.shape)}")
    for label, (cpu, wall, losses) in results.items():
        gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, loop_losses))
        # a step: one run's minibatch in the loop, every run's together on a batched path
        per_step = cpu / (steps * (runs if label == "loop" else 1)) * 1e3
        print(f"  {label:8s} CPU {cpu:7.2f} s ({per_step:5.2f} ms a step)  wall {wall:7.2f} s  loop/this: CPU "
              f"{loop_cpu / cpu:5.1f}x, wall {loop_wall / wall:5.1f}x;  final loss vs loop: largest relative "
              f"difference {gap:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    for name in args.models:
        bench(name, args.runs, args.epochs)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
