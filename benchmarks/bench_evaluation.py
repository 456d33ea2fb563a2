#!/usr/bin/env python3
"""Scoring many sample clouds against one fresh draw of the data: each on its own, or with the data's
own pair sums computed once (``vaelib.metrics.ReferenceSums``), as the comparison chapter does.

    python benchmarks/bench_evaluation.py                 # 20 clouds of 2,000 points (the comparison's n_quality)
    python benchmarks/bench_evaluation.py --clouds 56 --repeats 5

Each round scores every cloud with ``cosine_sample_quality`` (all six metrics), first alone, then
sharing one ``ReferenceSums``, in one thread; the two orders alternate round by round. Prints the
CPU time of each way (the median over rounds), their ratio, the share of the data's own sums in the
work, and whether the numbers are identical (they must be). Not part of the test suite.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vaelib import threads
from vaelib.data import cosine_surface
from vaelib.metrics import ReferenceSums, cosine_sample_quality, median_bandwidth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clouds", type=int, default=20)
    parser.add_argument("--points", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    fresh = cosine_surface(args.points, seed=1_000)
    bandwidth = median_bandwidth(fresh)
    # Clouds of a model's kind: the surface with some spread of their own, each a little different.
    clouds = [cosine_surface(args.points, seed=s) * (1 + 0.01 * s) for s in range(args.clouds)]

    def alone() -> list[dict]:
        return [cosine_sample_quality(cloud, fresh, bandwidth=bandwidth) for cloud in clouds]

    def shared() -> list[dict]:
        sums = ReferenceSums()
        return [cosine_sample_quality(cloud, fresh, bandwidth=bandwidth, reference_sums=sums) for cloud in clouds]

    times: dict[str, list[float]] = {"alone": [], "shared": []}
    results = {}
    with threads.limited(1):
        alone(), shared()  # warm-up: first calls allocate
        for repeat in range(args.repeats):
            for name, way in ((("alone", alone), ("shared", shared)) if repeat % 2 == 0
                              else (("shared", shared), ("alone", alone))):
                start = time.process_time()
                results[name] = way()
                times[name].append(time.process_time() - start)
    alone_s, shared_s = statistics.median(times["alone"]), statistics.median(times["shared"])
    print(f"{args.clouds} clouds of {args.points} points against {args.points} fresh points, one thread, "
          f"median of {args.repeats} rounds (CPU time)")
    print(f"  each alone:            {alone_s:.2f} s  ({1e3 * alone_s / args.clouds:.0f} ms a cloud)")
    print(f"  data's sums shared:    {shared_s:.2f} s  ({1e3 * shared_s / args.clouds:.0f} ms a cloud)")
    print(f"  ratio alone / shared:  {alone_s / shared_s:.2f}x")
    print(f"  identical numbers:     {results['alone'] == results['shared']}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
