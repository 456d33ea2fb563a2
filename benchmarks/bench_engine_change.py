#!/usr/bin/env python3
"""Time the default reproduction's training with this tree's engine against an earlier revision's.

    python benchmarks/bench_engine_change.py                    # against a2797f9, the engine before
                                                                # objectives were written once (issue 9)
    python benchmarks/bench_engine_change.py --baseline HEAD~3 --repeats 7

The baseline revision is checked out into a temporary git worktree. Each repeat trains the full
default configuration (``Ko2023Config()``: 20 runs x 200 epochs x 10,000 points, the batched engine)
once with each tree, in fresh processes and in alternating order (A B, B A, ...), after one warm-up
each (the kernel is built and cached on first use). Prints, per tree, the median wall time and CPU
time (user + sys of the child process) and, pair by pair, the ratio this tree / baseline, with
the load average before and after: on a busy machine wall times vary, CPU times much less.
Also checks that both trees trained the same numbers (the final R of every run).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "a2797f9"
TRAIN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from vaelib.experiments import ko2023
config = ko2023.Ko2023Config()
x = ko2023.make_data(config)
specs = ko2023.run_specs(config)
start = time.perf_counter()
trained = ko2023.train_runs_batched(config, x, specs, False)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "recon": [run.history["recon"][-1] for run in trained]}))
"""


def train_once(tree: Path) -> dict:
    """One training of the default reproduction by ``tree``'s vaelib, in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", TRAIN, str(tree)], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git revision (default {DEFAULT_BASELINE})")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of timed trainings (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vaelib-baseline-") as folder:
        baseline = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            trees = {"this tree": ROOT, f"baseline {args.baseline}": baseline}
            print(f"load average before: {os.getloadavg()}", flush=True)
            for tree in trees.values():
                train_once(tree)  # warm-up: imports, the kernel's build
            results: dict[str, list[dict]] = {name: [] for name in trees}
            for repeat in range(args.repeats):
                order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
                for name in order:
                    results[name].append(train_once(trees[name]))
                    print(f"  {name}: {results[name][-1]['seconds']:.2f} s wall, {results[name][-1]['cpu']:.2f} s CPU",
                          flush=True)
            print(f"load average after: {os.getloadavg()}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
    ours, theirs = results["this tree"], results[f"baseline {args.baseline}"]
    for name, runs in results.items():
        print(f"{name}: median {statistics.median(r['seconds'] for r in runs):.2f} s wall, "
              f"{statistics.median(r['cpu'] for r in runs):.2f} s CPU over {len(runs)} trainings")
    wall = [a["seconds"] / b["seconds"] for a, b in zip(ours, theirs)]
    cpu = [a["cpu"] / b["cpu"] for a, b in zip(ours, theirs)]
    print(f"ratio this tree / baseline, pair by pair: wall median {statistics.median(wall):.3f} "
          f"(min {min(wall):.3f}, max {max(wall):.3f}); CPU median {statistics.median(cpu):.3f} "
          f"(min {min(cpu):.3f}, max {max(cpu):.3f})")
    same = max(abs(a - b) for a, b in zip(ours[0]["recon"], theirs[0]["recon"]))
    print(f"largest difference in a run's final R between the trees: {same:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
