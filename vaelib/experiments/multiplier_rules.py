"""Part III's experiment: how the Lagrange multiplier's update rule shapes what a VAE learns.

Trains the same VAE with several objectives (named factories) and several seeds, all runs together
in one ``fit_batched`` call (the same numbers as ``fit`` run by run, up to rounding).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from vaelib.engine import fit_batched
from vaelib.models import VAE
from vaelib.objectives import Objective
from vaelib.runs import History, TrainingSettings
from vaelib.seeding import seed_everything
from vaelib.tables import render_table


@dataclass
class Run:
    variant: str
    seed: int
    model: VAE
    objective: Objective
    history: History


def train_variants(variants: Mapping[str, Callable[[], Objective]], x: torch.Tensor, *, seeds: Sequence[int],
                   epochs: int, batch_size: int = 100, lr: float = 1e-3, hidden: Sequence[int] = (32,),
                   progress: bool = True) -> list[Run]:
    """Train ``VAE(d, 2, hidden, "ptanh")`` once per (variant, seed); model weights seeded by ``seed``."""
    if not variants:
        raise ValueError("variants is empty: give at least one name -> objective factory")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, lr=lr)
    runs = []
    for name, make_objective in variants.items():
        for seed in seeds:
            seed_everything(seed)
            runs.append(Run(name, seed, VAE(x.shape[1], 2, hidden, "ptanh"), make_objective(), History()))
    histories = fit_batched([r.model for r in runs], [r.objective for r in runs], x, settings,
                            seeds=[r.seed for r in runs], progress=progress)
    for run, history in zip(runs, histories):
        run.history = history
    return runs


def final_summary(runs: Sequence[Run]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per variant, the mean and the sample standard deviation (ddof = 1, as ``vaelib.claims``
    uses; NaN for one seed) over seeds of each term's last-epoch value."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for name in dict.fromkeys(r.variant for r in runs):
        finals = [r.history.final() for r in runs if r.variant == name]
        summary[name] = {}
        for term in finals[0]:
            values = np.array([f[term] for f in finals], dtype=float)
            spread = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            summary[name][term] = (float(values.mean()), spread)
    return summary


# How the summary's columns are headed.
TERM_LABELS = {"recon": "R", "kl": "KL (nats/point)", "alpha": "α"}


def format_summary(summary: Mapping[str, Mapping[str, tuple[float, float]]],
                   terms: Sequence[str] = ("recon", "kl", "alpha"), style: str = "text") -> str:
    """One row per variant, mean ± std of each term ("–" where a variant does not log it), in a
    ``vaelib.tables`` style: ``"text"``, ``"markdown"`` (a book page captions it) or ``"html"``."""
    rows = [[name, *(stats.get(t) for t in terms)] for name, stats in summary.items()]
    return render_table(["variant", *(TERM_LABELS.get(t, t) for t in terms)], rows, style)


# Colour and line style per variant: the Okabe-Ito colours without yellow, each variant also with
# its own dash pattern so that no two are told apart by colour alone.
_STYLES = [("#0072B2", "-"), ("#D55E00", "--"), ("#009E73", "-."), ("#CC79A7", ":"), ("#000000", (0, (5, 1, 1, 1))),
           ("#56B4E9", (0, (3, 1))), ("#E69F00", (0, (1, 1)))]


def plot_multiplier_dynamics(runs: Sequence[Run], delta: float, title: str = ""):
    """Three stacked panels over epochs, one line per run: alpha, the KL (with delta) and the
    reconstruction error; each variant has its own colour and dash pattern. 4.6 inches wide (the
    book's width for a phone), with one legend under the panels."""
    fig, axes = plt.subplots(3, 1, figsize=(4.6, 9.0), sharex=True, layout="constrained")
    variants = list(dict.fromkeys(r.variant for r in runs))
    styles = {name: _STYLES[i % len(_STYLES)] for i, name in enumerate(variants)}
    for run in runs:
        epochs = np.arange(1, len(run.history) + 1)
        first = run.seed == min(r.seed for r in runs if r.variant == run.variant)
        colour, dashes = styles[run.variant]
        style = {"color": colour, "ls": dashes, "lw": 1.4, "label": run.variant if first else None}
        if "alpha" in run.history.terms:
            axes[0].plot(epochs, run.history["alpha"], **style)
        axes[1].plot(epochs, run.history["kl"], **style)
        axes[2].plot(epochs, run.history["recon"], **style)
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].set_ylabel("multiplier α (symlog)")
    axes[1].axhline(delta, color="0.4", lw=2.5, alpha=0.5, label=f"δ = {delta:g}")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("KL per point (nats)")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("reconstruction error R")
    axes[2].set_xlabel("epoch")
    for ax, panel in zip(axes, ("the multiplier", "the divergence and its bound", "reconstruction")):
        ax.set_title(panel)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9)
    if title:
        fig.suptitle(title)
    return fig
