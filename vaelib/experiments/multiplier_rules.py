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

from vaelib import _checks
from vaelib.engine import fit_batched
from vaelib.models import VAE
from vaelib.objectives import Objective
from vaelib.plots import PALETTE
from vaelib.seeding import seed_everything
from vaelib.train import History


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
    _checks.positive_int("epochs", epochs)
    runs = []
    for name, make_objective in variants.items():
        for seed in seeds:
            seed_everything(seed)
            runs.append(Run(name, seed, VAE(x.shape[1], 2, hidden, "ptanh"), make_objective(), History()))
    histories = fit_batched([r.model for r in runs], [r.objective for r in runs], x, seeds=[r.seed for r in runs],
                            epochs=epochs, batch_size=batch_size, lr=lr, progress=progress)
    for run, history in zip(runs, histories):
        run.history = history
    return runs


def final_summary(runs: Sequence[Run]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per variant, the mean and standard deviation over seeds of each term's last-epoch value."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for name in dict.fromkeys(r.variant for r in runs):
        finals = [r.history.final() for r in runs if r.variant == name]
        summary[name] = {term: (float(np.mean([f[term] for f in finals])), float(np.std([f[term] for f in finals])))
                         for term in finals[0]}
    return summary


def format_summary(summary: Mapping[str, Mapping[str, tuple[float, float]]],
                   terms: Sequence[str] = ("recon", "kl", "alpha")) -> str:
    """A plain-text table: one row per variant, mean ± std of each term (blank where not logged)."""
    width = max(len(name) for name in summary) + 2
    lines = [" " * width + "".join(f"{t:>22}" for t in terms)]
    for name, stats in summary.items():
        cells = [f"{stats[t][0]:>11.4g} ± {stats[t][1]:<8.2g}" if t in stats else f"{'-':>22}" for t in terms]
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def plot_multiplier_dynamics(runs: Sequence[Run], delta: float, title: str = ""):
    """Three panels over epochs, one line per run: alpha, the KL (with delta) and the reconstruction error."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(r.variant for r in runs))}
    for run in runs:
        epochs = np.arange(1, len(run.history) + 1)
        first = run.seed == min(r.seed for r in runs if r.variant == run.variant)
        label = run.variant if first else None
        if "alpha" in run.history.terms:
            axes[0].plot(epochs, run.history["alpha"], color=colours[run.variant], label=label, lw=1.2)
        axes[1].plot(epochs, run.history["kl"], color=colours[run.variant], label=label, lw=1.2)
        axes[2].plot(epochs, run.history["recon"], color=colours[run.variant], label=label, lw=1.2)
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].set_ylabel("multiplier α")
    axes[1].axhline(delta, color="black", ls=":", label=f"δ = {delta:g}")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("KL per point (nats)")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("reconstruction error R")
    for ax, panel in zip(axes, ("the multiplier", "the divergence and its bound", "reconstruction")):
        ax.set_xlabel("epoch")
        ax.set_title(panel)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
