"""A sweep's results: one row per run (``runs.csv``, ``runs.json``) and a summary over the seeds
(``summary.csv``, ``summary.json``), written as one group; ``SweepResult``, what ``run_sweep`` returns.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelib import _io
from vaelib.claims import mean_std
from vaelib.sweep.spec import Run
from vaelib.metrics.quality import BETTER
from vaelib.tables import Column, render_table

RESULT_FILES = ("runs.csv", "runs.json", "summary.csv", "summary.json")
# How the summary table heads the metrics and the usual axes (others keep their names from the sweep file).
METRIC_LABELS = {"recon": "R", "kl": "KL (nats/point)", "loss": "loss", "mmd2": "MMD²", "energy": "energy distance",
                 "surface_distance": "distance to surface", "surface_distance_p90": "distance to surface (p90)",
                 "coverage_distance": "coverage distance", "cell_coverage": "cells covered", "alpha": "α",
                 "heldout_recon": "held-out R", "heldout_kl": "held-out KL (nats/point)"}
AXIS_LABELS = {"beta": "β", "kappa": "κ", "delta": "δ", "lr": "learning rate"}


@dataclass
class SweepResult:
    """What ``run_sweep`` gives back: the table's ``rows`` (grid order), the ``summary``, the files it
    wrote, and what this call did: runs trained (in how many chunks), runs found done, seconds, and the
    chunk files it ignored (unreadable, edited or damaged: not matching their digest, their name or
    their runs' specs; their runs were trained again)."""

    axes: tuple[str, ...]
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    paths: dict[str, Path]
    runs_trained: int
    chunks_trained: int
    runs_skipped: int
    seconds: float
    ignored_files: list[Path]

    def summary_table(self, style: str = "text") -> str:
        """The summary, one line per combination of the axes, mean ± std of each metric, as text
        (a terminal) or Markdown (a notebook page); see ``vaelib.tables``."""
        return format_summary(self.summary, self.axes, style)


def table_row(run: Run, result: dict[str, Any]) -> dict[str, Any]:
    row = {"run": run.key[:12], "seed": run.spec["training"]["seed"], "objective": run.spec["objective"]["name"]}
    row.update((name, value) for name, value in run.settings.items() if name not in row)
    row["status"] = result["status"]
    if "error" in result:
        row["error"] = result["error"]
    row.update((f"final_{name}", value) for name, value in result["final"].items())
    row.update((f"eval_{name}", value) for name, value in result["eval"].items())
    return row


def summarise(rows: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> list[dict[str, Any]]:
    """One row per combination of the axes other than seed, in order of first appearance: ``runs``,
    ``diverged``, and ``<column>_mean`` / ``<column>_std`` (sample std; None for a single run) of every
    ``final_`` and ``eval_`` column over that combination's runs that finished."""

    keys = [axis for axis in axes if axis != "seed"]
    columns = _metric_columns(rows)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(json.dumps(row.get(k)) for k in keys), []).append(row)
    summary = []
    for members in groups.values():
        ok = [row for row in members if row["status"] == "ok"]
        entry = {k: members[0].get(k) for k in keys}
        entry.update(runs=len(ok), diverged=len(members) - len(ok))
        for column in columns:
            values = [row[column] for row in ok if row.get(column) is not None]
            stats = mean_std(values) if values else {"mean": None, "std": None}
            entry.update({f"{column}_mean": stats["mean"], f"{column}_std": stats["std"]})
        summary.append(entry)
    return summary


def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update((c, None) for c in row if c.startswith(("final_", "eval_")))
    return sorted(columns, key=lambda c: not c.startswith("eval_"))


def format_summary(summary: Sequence[Mapping[str, Any]], axes: Sequence[str], style: str = "text") -> str:
    """A summary as a table: the axes, runs, then mean ± std of each eval_ column (of the final_
    columns when no metric was evaluated); the sample metrics ranked, with the legend below."""
    keys = [axis for axis in axes if axis != "seed"]
    names = [c[:-5] for c in (summary[0] if summary else {}) if c.endswith("_mean")]
    shown = [c for c in names if c.startswith("eval_")] or names
    header: list[str | Column] = [*(AXIS_LABELS.get(k, k) for k in keys), "runs"]
    for column in shown:
        name = column.removeprefix("eval_")
        ranked = column.startswith("eval_") and name in BETTER  # a sample metric; R and the KL trade off
        header.append(Column(METRIC_LABELS.get(name, name), BETTER[name] if ranked else None))
    lines = [[("" if entry[k] is None else str(entry[k])) for k in keys] + [str(entry["runs"])]
             + [(entry[f"{c}_mean"], entry[f"{c}_std"], entry["runs"]) for c in shown] for entry in summary]
    return render_table(header, lines, style, show_legend=True)  # no page captions it: the table says it


def write_results(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> dict[str, Path]:
    """The four result files, written as one group (``vaelib._io.write_files``): all or none."""
    paths = {name: out / name for name in RESULT_FILES}
    _io.write_files({paths["runs.csv"]: _csv_text(rows), paths["runs.json"]: json_text(rows),
                     paths["summary.csv"]: _csv_text(summary), paths["summary.json"]: json_text(summary)},
                    what="the sweep's table")
    return paths


def json_text(content: object) -> str:
    return json.dumps(content, indent=1) + "\n"


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return text.getvalue()
