#!/usr/bin/env python3
"""Time the reproduction of Ko & Ko's Table 1 with the batched and the loop engine, in one process.

    python benchmarks/bench_reproduce.py                 # the loop engine timed on a subset, extrapolated
    python benchmarks/bench_reproduce.py --full-loop     # the loop engine timed on the full work (minutes)

The work: 20 runs (10 per objective) x 200 epochs x 10,000 points, the configuration that
``python -m vaelib reproduce`` uses by default (``Ko2023Config()``), and the same work at other
batch sizes (100 = Kingma & Welling's minibatch is always among them). Prints wall times (medians
of --repeats), the loop/batched ratio, optimiser steps per second and the achieved FLOP/s
against an estimate of this machine's peak. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vaelib.engine import kernel_available  # noqa: E402
from vaelib.experiments import ko2023  # noqa: E402


def cpu_peak() -> dict:
    """Peak float32 FLOP/s estimated as cores x clock x FLOPs per cycle per core.

    FLOPs per cycle assume two fused multiply-add units per core (true of AMD Zen and of Intel
    cores since Haswell): 2 units x lanes x 2 FLOPs, with 8 float32 lanes for AVX2+FMA, 16 for
    AVX-512, 4 for SSE (and no FMA: 2 x 4). The clock is the one /proc/cpuinfo reports (the base
    clock on a VM; turbo would be higher)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor())
    cores = os.cpu_count() or 1
    if "avx512f" in flags:
        isa, per_cycle = "AVX-512 + FMA", 2 * 16 * 2
    elif "avx2" in flags and "fma" in flags:
        isa, per_cycle = "AVX2 + FMA", 2 * 8 * 2
    else:
        isa, per_cycle = "SSE", 2 * 4
    clock = (max(mhz) if mhz else 0.0) * 1e6
    return {"model": model, "cores": cores, "clock": clock, "isa": isa, "per_cycle": per_cycle,
            "peak": cores * clock * per_cycle}


def flops_per_point(config: ko2023.Ko2023Config) -> int:
    """Matrix-product FLOPs of one training step per point and run: forward (2·in·out per layer),
    weight gradients (2·in·out) and input gradients (2·in·out, all layers but the first).
    Elementwise work (tanh, exp, the optimiser) is left out, so this undercounts."""
    d, h, k = 3, config.hidden, config.latent_dim
    layers = [(d, h), (h, 2 * k), (k, h), (h, d)]
    forward = sum(2 * i * o for i, o in layers)
    return forward + forward + sum(2 * i * o for i, o in layers[1:])


def time_batched(config: ko2023.Ko2023Config, repeats: int) -> dict:
    """Full reproductions (training, evaluation, Figure 1's samples) with the batched engine."""
    training, total, cpu = [], [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = ko2023.reproduce(replace(config, engine="batched"), progress=False)
        total.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        training.append(result.seconds)
    return {"training": statistics.median(training), "total": statistics.median(total), "all": training,
            "cpu": statistics.median(cpu)}


def time_loop(config: ko2023.Ko2023Config, runs_per_objective: int, epochs: int) -> dict:
    """The loop engine's training time on runs_per_objective x 2 runs of ``epochs`` epochs,
    extrapolated linearly to the full work when that is a subset; with PyTorch's default threads
    and with one thread (often faster for such small operations), the faster one counting."""
    subset = replace(config, runs=runs_per_objective, epochs=epochs, engine="loop")
    x = ko2023.make_data(subset)
    scale = (config.runs / runs_per_objective) * (config.epochs / epochs)
    default_threads, timings = torch.get_num_threads(), {}
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        start, start_cpu = time.perf_counter(), time.process_time()
        ko2023.train_runs_loop(subset, x, ko2023.run_specs(subset), progress=False)
        timings[threads] = (time.perf_counter() - start, time.process_time() - start_cpu)
    torch.set_num_threads(default_threads)
    threads = min(timings, key=lambda t: timings[t][0])
    seconds, cpu = timings[threads]
    return {"measured": seconds, "full": seconds * scale, "cpu": cpu * scale, "extrapolated": scale != 1,
            "subset": f"{2 * runs_per_objective} runs x {epochs} epochs",
            "threads": ", ".join(f"{t} thread(s): {w * scale:.0f} s" for t, (w, _) in sorted(timings.items()))}


def report(label: str, config: ko2023.Ko2023Config, batched: dict, loop: dict | None, peak: dict) -> None:
    runs = 2 * config.runs
    steps = config.epochs * -(-config.n_points // config.batch_size)
    flops = runs * config.epochs * config.n_points * flops_per_point(config)
    seconds = batched["training"]
    print(f"\n== {label}: batch size {config.batch_size}, {runs} runs x {config.epochs} epochs x "
          f"{config.n_points:,} points ({steps:,} steps of all runs) ==")
    print(f"batched engine: training {seconds:.2f} s (median of {len(batched['all'])}: "
          f"{', '.join(f'{s:.2f}' for s in batched['all'])}); whole reproduction with evaluation "
          f"{batched['total']:.2f} s; CPU time of the whole reproduction {batched['cpu']:.2f} s (all threads)")
    print(f"  {steps / seconds:,.0f} steps/s of all {runs} runs = {runs * steps / seconds:,.0f} run-steps/s; "
          f"{flops / seconds / 1e9:.2f} GFLOP/s of matrix products = {100 * flops / seconds / peak['peak']:.1f}% "
          f"of the estimated peak ({flops / 1e9:.1f} GFLOP in all)")
    if loop is None:
        return
    how = (f"EXTRAPOLATED linearly from {loop['subset']} measured in {loop['measured']:.1f} s"
           if loop["extrapolated"] else "measured on the full work")
    print(f"loop engine:    training {loop['full']:.1f} s ({how}); CPU time {loop['cpu']:.1f} s; "
          f"by thread count {loop['threads']}")
    print(f"  {runs * steps / loop['full']:,.0f} run-steps/s (one run at a time); "
          f"{flops / loop['full'] / 1e9:.3f} GFLOP/s")
    print(f"ratio loop / batched: {loop['full'] / seconds:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed reproductions per batch size (median)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--loop-runs", type=int, default=1, help="loop engine: runs per objective to time")
    parser.add_argument("--loop-epochs", type=int, default=20, help="loop engine: epochs to time")
    parser.add_argument("--full-loop", action="store_true", help="time the loop engine on the full work")
    args = parser.parse_args()

    default = ko2023.Ko2023Config()
    peak = cpu_peak()
    print(f"machine: {peak['model']}, {peak['cores']} cores at {peak['clock'] / 1e9:.2f} GHz, {peak['isa']}: "
          f"estimated peak {peak['cores']} x {peak['clock'] / 1e9:.2f} GHz x {peak['per_cycle']} FLOP/cycle = "
          f"{peak['peak'] / 1e9:.0f} GFLOP/s (float32)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; engine kernel available: "
          f"{kernel_available()}; load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")

    for engine in ("batched", "loop"):  # first calls import modules and may build the kernel: not timed below
        start = time.perf_counter()
        ko2023.reproduce(replace(default, runs=1, epochs=1, engine=engine), progress=False)
        print(f"warm-up of the {engine} engine (first-call costs, kernel build if not cached): "
              f"{time.perf_counter() - start:.2f} s")

    loop_runs, loop_epochs = (default.runs, default.epochs) if args.full_loop else (args.loop_runs, args.loop_epochs)
    with_loop = {default.batch_size, 100}  # the default, and Kingma & Welling's minibatch whatever the default
    report("the default configuration of `python -m vaelib reproduce`", default, time_batched(default, args.repeats),
           time_loop(default, loop_runs, loop_epochs), peak)
    for batch_size in sorted((set(args.batch_sizes) | with_loop) - {default.batch_size}):
        config = replace(default, batch_size=batch_size)
        loop = time_loop(config, loop_runs, loop_epochs) if batch_size in with_loop else None
        report(f"batch size {batch_size}", config, time_batched(config, args.repeats), loop, peak)
    print(f"\nload average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
