#!/usr/bin/env python3
"""Time the execution of each chapter, fresh (no cache), under each thread setting, in one table.

    python benchmarks/bench_chapters.py                              # every chapter, modes vaelib and omp1
    python benchmarks/bench_chapters.py --chapters vae constrained   # some chapters (names as in book/)
    python benchmarks/bench_chapters.py --modes vaelib omp1 torch    # also PyTorch's own thread count

Each chapter runs in a new Jupyter kernel with the chapter's folder as working directory, as the
book build runs it. Modes, the environment that kernel gets:

* ``vaelib``: OMP_NUM_THREADS and VAELIB_THREADS unset, so vaelib chooses (what a reader's
  Jupyter gets);
* ``omp1``: OMP_NUM_THREADS=1 (what `tasks.py` used to set for every process);
* ``torch``: VAELIB_THREADS=<cores>, OMP_NUM_THREADS unset: PyTorch's default thread count inside
  vaelib too (what a reader got before vaelib chose).

The modes alternate chapter by chapter, so that a change of load affects them alike. Printed per
chapter and mode: wall time, the kernel's CPU time (all its threads; it moves much less with the
load than the wall time), and the slowest cell. The load average is printed at start and end:
quote it with the figures. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402

BUDGET_SECONDS = 45  # per chapter at idle (issue 15); the book's CHAPTERS.md asks for under a minute
CELL_TIMEOUT_SECONDS = 900
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "VAELIB_THREADS")
MODES = ("vaelib", "omp1", "torch")


def environment(mode: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    if mode == "omp1":
        env["OMP_NUM_THREADS"] = "1"
    elif mode == "torch":
        env["VAELIB_THREADS"] = str(len(os.sched_getaffinity(0)))
    return env


def kernel_cpu_seconds() -> float:
    """CPU time of the finished child processes (the kernels, once shut down and reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(notebook_path: Path, mode: str) -> dict:
    """Execute one notebook in a fresh kernel, with the build's prelude (``tasks.IMPORTS_RECORDER``);
    return wall and CPU seconds and the slowest cell."""
    notebook = nbformat.read(notebook_path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="bench-chapters-") as scratch:
        prelude = Path(scratch) / "prelude.py"  # what the build runs in each chapter's kernel first
        prelude.write_text(tasks.IMPORTS_RECORDER.format(path=str(Path(scratch) / "imported.txt")))
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook_path.parent)}}, record_timing=True,
                                extra_arguments=[f"--IPKernelApp.exec_files={prelude}"])
        cpu_before, start = kernel_cpu_seconds(), time.perf_counter()
        try:
            client.execute(env=environment(mode))
            failed = ""
        except CellExecutionError as error:  # timed up to the failing cell; the table marks it
            failed = str(error).strip().splitlines()[-1]
        wall = time.perf_counter() - start
    return {"wall": wall, "cpu": kernel_cpu_seconds() - cpu_before, "slowest": slowest_cell(notebook),
            "failed": failed}


def slowest_cell(notebook) -> tuple[float, int, str]:
    """(seconds, cell number from 1, first line of source) of the cell that took longest."""
    slowest = (0.0, 0, "")
    for index, cell in enumerate(notebook.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            seconds = (_time(timing["shell.execute_reply"]) - _time(timing["iopub.execute_input"])).total_seconds()
            first_line = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
            slowest = max(slowest, (seconds, index + 1, first_line[:40]))
    return slowest


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} cores"


def warm_up() -> None:
    """Import what the chapters import once, untimed, so the first chapter does not pay for a cold disk."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import vaelib, matplotlib.pyplot, sklearn.decomposition")])
    NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3").execute()


def parse_args(argv: list[str]) -> argparse.Namespace:
    chapters = [Path(page).name for page in tasks.notebook_chapters()]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="+", choices=chapters, default=chapters, metavar="NAME",
                        help=f"chapters to run, of: {' '.join(chapters)} (default: all, in book order)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["vaelib", "omp1"],
                        help="thread settings to compare (default: vaelib omp1)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per chapter and mode; the median is printed")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"load average at start: {load()}", flush=True)
    warm_up()
    rows = []
    for name in args.chapters:
        results = {}
        for mode in args.modes:
            runs = [execute(ROOT / "book" / f"{name}.ipynb", mode) for _ in range(args.repeats)]
            results[mode] = {"wall": statistics.median(r["wall"] for r in runs),
                             "cpu": statistics.median(r["cpu"] for r in runs), "slowest": runs[0]["slowest"],
                             "failed": next((r["failed"] for r in runs if r["failed"]), "")}
            seconds, cell, first = results[mode]["slowest"]
            failed = f"   FAILED: {results[mode]['failed']}" if results[mode]["failed"] else ""
            print(f"  {name:<18} {mode:<7} {results[mode]['wall']:7.1f} s wall {results[mode]['cpu']:7.1f} s CPU"
                  f"   slowest: cell {cell} {seconds:.1f} s ({first}){failed}", flush=True)
        rows.append((name, results))
    print(f"load average at end:   {load()}\n")
    print_table(rows, args.modes)
    return 0


def print_table(rows, modes) -> None:
    header = f"{'chapter':<18}" + "".join(f"{mode + ' wall':>13}{mode + ' CPU':>12}" for mode in modes)
    print(header + "   slowest cell (" + modes[0] + ")")
    for name, results in rows:
        line = f"{name:<18}" + "".join(f"{results[m]['wall']:>11.1f} s{results[m]['cpu']:>10.1f} s" for m in modes)
        seconds, cell, first = results[modes[0]]["slowest"]
        over = [kind for kind in ("wall", "cpu") if results[modes[0]][kind] > BUDGET_SECONDS]
        over = f"  over {BUDGET_SECONDS} s: {' and '.join(over)}" if over else ""
        over += "  FAILED (timed up to the failing cell)" if any(results[m]["failed"] for m in modes) else ""
        print(f"{line}   cell {cell}: {seconds:.1f} s ({first}){over}")
    totals = "".join(f"{sum(r[m]['wall'] for _, r in rows):>11.1f} s{sum(r[m]['cpu'] for _, r in rows):>10.1f} s"
                     for m in modes)
    print(f"{'total':<18}{totals}")
    print(f"(over {BUDGET_SECONDS} s: the budget per chapter at idle, exceeded by the first mode's wall or CPU "
          "time; under load the CPU time is the better guide to the wall time at idle)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
