"""The book's figures: one style (sizes, a colour-blind-safe palette) and the plots chapters share."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

# Okabe & Ito's colour-blind-safe palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
VIEW_3D = {"elev": 25, "azim": -60}


def use_book_style() -> None:
    """Apply the book's matplotlib style (called by every chapter's first cell)."""
    matplotlib.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 120, "figure.figsize": (6.4, 4.0),
        "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.constrained_layout.use": True,
    })


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def scatter3d(ax, points, title: str = "", color: str | None = None, size: float = 1.0,
              limits: Sequence[tuple[float, float]] | None = None) -> None:
    """A 3-D point cloud with the book's fixed view angle and small markers, on a 3-D axis."""
    p = _np(points)
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=size, color=color or PALETTE[0], alpha=0.6, linewidths=0)
    ax.view_init(**VIEW_3D)
    ax.set_xlabel("x"); ax.set_ylabel("y"); ax.set_zlabel("z")
    if limits is not None:
        ax.set_xlim(*limits[0]); ax.set_ylim(*limits[1]); ax.set_zlim(*limits[2])
    ax.set_title(title)


def point_clouds_3d(clouds: Mapping[str, object], suptitle: str = "", size: float = 1.0):
    """Side-by-side 3-D scatter plots sharing the limits of the first cloud (the data)."""
    fig = plt.figure(figsize=(4.2 * len(clouds), 4.2))
    first = _np(next(iter(clouds.values())))
    pad = 0.1 * (first.max(0) - first.min(0))
    limits = list(zip(first.min(0) - pad, first.max(0) + pad))
    for i, (title, pts) in enumerate(clouds.items()):
        ax = fig.add_subplot(1, len(clouds), i + 1, projection="3d")
        scatter3d(ax, pts, title=title, color=PALETTE[i % len(PALETTE)], size=size, limits=limits)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_history(history, terms: Sequence[str] | None = None, title: str = "", logy: bool = False,
                 ylabel: str = "value (per point)"):
    """The per-epoch curves of the named terms of a ``History``."""
    fig, ax = plt.subplots()
    for name in terms or list(history.terms):
        ax.plot(np.arange(1, len(history[name]) + 1), history[name], label=name)
    ax.set_xlabel("epoch"); ax.set_ylabel(ylabel); ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return fig


def latent_scatter(z, labels=None, title: str = "", ax=None):
    """A 2-D code coloured by ``labels`` (e.g. digit classes, or a coordinate of the data)."""
    z = _np(z)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    sc = ax.scatter(z[:, 0], z[:, 1], c=None if labels is None else _np(labels), s=3,
                    cmap="viridis" if labels is not None else None)
    if labels is not None:
        plt.colorbar(sc, ax=ax)
    ax.set_xlabel("$z_1$"); ax.set_ylabel("$z_2$"); ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    return ax


def image_grid(images, shape: tuple[int, int], rows: int, title: str = ""):
    """Images (n, h*w) laid out in ``rows`` rows, without axes."""
    imgs = _np(images).reshape(-1, *shape)
    cols = int(np.ceil(len(imgs) / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, imgs):
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    return fig
