"""Sweeps: a grid of experiments trained chunk by chunk on a Dask cluster, resumable, one table at the end.

Why: checking a paper's claim means a grid (seeds x objectives x delta x learning rates ...). The
batched engine trains hundreds of runs at once on one machine; a sweep spreads such batches over
the cores of a machine or over many machines through Dask's distributed scheduler (a
``LocalCluster`` by default; SSH, Slurm, PBS and Kubernetes clusters through ``dask-jobqueue`` and
``dask-kubernetes``), and keeps every finished piece, so that an interrupted sweep continues.

**The sweep file format** (every table, key and default, the chunks, resuming, the result files,
where it runs) is documented in the book, on the page "Running larger experiments"
(``book/larger_experiments.ipynb``), section "The sweep file format" (label ``sec-sweep-format``).
The command line: ``python -m vaelib sweep SPEC.toml --out DIR`` (``vaelib.cli.sweep``).

One concern per module:

* ``spec``: the sweep file read, checked and expanded into runs (``load_spec``, ``parse_spec``,
  ``Sweep``, ``Run``, ``SpecError``);
* ``worker``: one chunk trained as one ``fit_batched`` call and scored (``train_chunk``,
  ``evaluate``), what a Dask worker runs;
* ``client``: the cluster, the chunk files, resuming (``run_sweep``, ``local_cluster``,
  ``SweepIncomplete``);
* ``results``: the table of runs and its summary over seeds (``SweepResult``, ``summarise``,
  ``format_summary``).
"""
from __future__ import annotations

from vaelib.sweep.client import SweepIncomplete, local_cluster, run_sweep
from vaelib.sweep.results import SweepResult, format_summary, summarise
from vaelib.sweep.spec import METRICS, Run, SpecError, Sweep, load_spec, parse_spec
from vaelib.sweep.worker import evaluate, train_chunk

__all__ = ["METRICS", "Run", "Sweep", "SweepIncomplete", "SweepResult", "SpecError", "evaluate", "format_summary",
           "load_spec", "local_cluster", "parse_spec", "run_sweep", "summarise", "train_chunk"]
