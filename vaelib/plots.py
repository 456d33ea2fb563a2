"""The book's figures: one style (sizes, a colour-blind-safe palette) and the plots chapters share.

How large a figure is shown (issue 20): a chapter's figure is a PNG image of DPI pixels per inch.
On a desktop it is shown at its natural size, never larger (book/_static/book.css); on a phone it
shrinks to the column, but never below the scale that keeps its smallest text MIN_TEXT_PX CSS
pixels high: a wider figure scrolls sideways in its box instead (book/_ext/vaebook.py reads the
figure's smallest text from the image, where ``figure_png`` records it). No figure's text is under
MIN_FONT_PT, so a figure WIDTH inches wide fits a 390-px phone whole.
"""
from __future__ import annotations

import binascii
import io
import struct
import warnings
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text
import numpy as np
import torch

from vaelib import _checks

# Okabe & Ito's colour-blind-safe palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
VIEW_3D = {"elev": 25, "azim": -60}

DPI = 100  # pixels per inch of the figures a chapter shows
MIN_FONT_PT = 9  # the smallest text a figure of the book may have (a crowded panel's legend)
MIN_TEXT_PX = 9  # CSS pixels: the smallest that text may be shown, on a phone too
PHONE_COLUMN_PX = 342  # CSS pixels: the text column of a 390-px phone (tests/test_browser.py)
# Inches: the widest figure that column shows whole with MIN_FONT_PT text at MIN_TEXT_PX:
# 342 px * (MIN_FONT_PT * DPI / 72) / MIN_TEXT_PX = 475 px, with Jupyter's cropped margin.
WIDTH = 4.6
# The PNG text chunk in which ``figure_png`` records a figure's smallest text, in its own pixels.
SMALLEST_TEXT_KEY = "vaelib:smallest-text-px"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def use_book_style() -> None:
    """Apply the book's matplotlib style (called by every chapter's first cell); in Jupyter, a
    figure is shown as ``figure_png`` draws it."""
    matplotlib.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": 120, "figure.figsize": (WIDTH, 3.6),
        "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.constrained_layout.use": True,
    })
    _show_figures_as_book_pngs()


def _drawn_texts(artist):
    """The text artists of ``artist`` and its children that a drawing shows (visible, not empty,
    not the ticks of an axis turned off)."""
    if not artist.get_visible():
        return
    if isinstance(artist, Text) and artist.get_text().strip():
        yield artist
    hidden_axes = isinstance(artist, Axes) and not artist.axison
    for child in artist.get_children():
        if not (hidden_axes and isinstance(child, Axis)):
            yield from _drawn_texts(child)


def smallest_text_pt(fig) -> float | None:
    """The font size in points of the smallest text the figure shows (None if it shows none);
    tick labels count once the figure has been drawn (``figure_png`` draws it first)."""
    sizes = [text.get_fontsize() for text in _drawn_texts(fig)]
    return min(sizes) if sizes else None


def figure_png(fig) -> bytes:
    """The figure as a chapter shows it: a PNG at the figure's dpi, cropped to what it draws (as
    Jupyter crops it), recording its smallest text in pixels under SMALLEST_TEXT_KEY. Warns when
    that text is under MIN_FONT_PT, which a phone could not show MIN_TEXT_PX high."""
    fig.draw_without_rendering()  # tick labels get their text when the figure is drawn
    smallest = smallest_text_pt(fig)
    metadata = {}
    if smallest is not None:
        if smallest < MIN_FONT_PT - 1e-9:
            title = fig.get_suptitle() or next((ax.get_title() for ax in fig.axes if ax.get_title()), "untitled")
            warnings.warn(f"the figure {title!r} has {smallest:g}-pt text, under the book's smallest "
                          f"{MIN_FONT_PT} pt (vaelib.plots.MIN_FONT_PT), too small to read on a "
                          f"phone: give it a fontsize of at least {MIN_FONT_PT}", stacklevel=2)
        metadata[SMALLEST_TEXT_KEY] = f"{smallest * fig.dpi / 72:.2f}"
    buffer = io.BytesIO()
    fig.canvas.print_figure(buffer, format="png", dpi=fig.dpi, bbox_inches="tight",
                            facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor(), metadata=metadata)
    return buffer.getvalue()


def png_facts(data: bytes) -> tuple[int, int, float | None]:
    """A PNG image's width and height in pixels and the smallest text in pixels that
    ``figure_png`` recorded in it (None where it recorded none: the image was drawn otherwise)."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG image: its first bytes are not PNG's signature")
    size, smallest, at = None, None, 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunk = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", chunk[:8])
        elif kind == b"tEXt" and chunk.partition(b"\0")[0] == SMALLEST_TEXT_KEY.encode("latin-1"):
            smallest = float(chunk.partition(b"\0")[2])
        elif kind == b"IEND":
            break
        at += 12 + length  # length, kind, data, checksum
    if size is None:
        raise ValueError("a PNG image without its header chunk (IHDR): the file is cut short or damaged")
    return size[0], size[1], smallest


def _png_for_jupyter(fig) -> str | None:
    if not fig.axes and not fig.lines:  # an empty figure shows nothing, as in IPython
        return None
    return binascii.b2a_base64(figure_png(fig), newline=False).decode("ascii")


def _show_figures_as_book_pngs() -> None:
    """In IPython (a chapter's kernel), show figures and glued figures through ``figure_png``."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    try:  # Jupyter's inline backend sets IPython's figure formatters when it is first imported
        import matplotlib_inline.backend_inline  # noqa: F401  (so import it first, then set ours)
    except ImportError:
        pass
    shell.display_formatter.formatters["image/png"].for_type(Figure, _png_for_jupyter)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def scatter3d(ax, points, title: str = "", color: str | None = None, size: float = 1.0,
              limits: Sequence[tuple[float, float]] | None = None) -> None:
    """A 3-D point cloud with the book's fixed view angle and small markers, on a 3-D axis."""
    p = _np(points)
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=size, color=color or PALETTE[0], alpha=0.6, linewidths=0)
    ax.view_init(**VIEW_3D)
    ax.set_xlabel("$x_1$"); ax.set_ylabel("$x_2$"); ax.set_zlabel("$x_3$")  # the book's coordinates
    if limits is not None:
        ax.set_xlim(*limits[0]); ax.set_ylim(*limits[1]); ax.set_zlim(*limits[2])
    ax.set_title(title)


def point_clouds_3d(clouds: Mapping[str, object], suptitle: str = "", size: float = 1.0):
    """Side-by-side 3-D scatter plots sharing the limits of the first cloud (the data).

    A cloud that has collapsed to a spot (its spread under 1% of the data's) would be an invisible
    dot at these limits: it is drawn with large markers and its panel says where the spot is."""
    fig = plt.figure(figsize=(4.2 * len(clouds), 4.2))
    first = _np(next(iter(clouds.values())))
    extent = first.max(0) - first.min(0)
    pad = 0.1 * extent
    limits = list(zip(first.min(0) - pad, first.max(0) + pad))
    for i, (title, pts) in enumerate(clouds.items()):
        ax = fig.add_subplot(1, len(clouds), i + 1, projection="3d")
        points = _np(pts)
        spread = points.max(0) - points.min(0)
        collapsed = bool((spread < 0.01 * extent).all())
        if collapsed:
            centre = ", ".join(f"{v:.2f}" for v in points.mean(0))
            title = f"{title}\n(all within {spread.max():.1g} of ({centre}))"
        scatter3d(ax, points, title=title, color=PALETTE[i % len(PALETTE)], size=40 if collapsed else size,
                  limits=limits)
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


def plot_curves(curves: Mapping[str, Mapping[float, float]], *, xlabel: str, ylabel: str, title: str = "",
                references: Mapping[str, float] | None = None, logx: bool = True, ax=None):
    """One line with markers per named curve ``{x: y}``, plus dashed horizontal reference lines.

    Made for quantities that converge as a setting grows (e.g. a bound against its number of
    samples), where the references are the values they should approach or beat.
    """
    if ax is None:
        _, ax = plt.subplots()
    for i, (name, curve) in enumerate(curves.items()):
        xs = sorted(curve)
        ax.plot(xs, [curve[x] for x in xs], marker="o", ms=4, color=PALETTE[i % len(PALETTE)], label=name)
    for j, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=PALETTE[7], ls=["--", ":", "-."][j % 3], lw=1.2, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel); ax.set_ylabel(ylabel); ax.set_title(title)
    ax.legend()
    return ax


def latent_quantile_grid(n: int) -> torch.Tensor:
    """An n x n grid of 2-D latent values at the standard normal's quantiles (i + 0.5) / n: shape (n*n, 2).

    Kingma & Welling's manifold figures: equally spaced points of the unit square mapped through
    the Gaussian inverse CDF, so that every grid cell holds the same prior mass and the grid spans
    where the prior N(0, I) lives. Row-major, laid out like a plot: the first row has the largest
    z_2, and z_1 grows along each row.
    """
    _checks.positive_int("n", n)
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(n, dtype=torch.float64) + 0.5) / n)
    z2, z1 = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1).float()


def image_mosaic(images, shape: tuple[int, int], rows: int, title: str = "", ax=None, gap: int = 1):
    """Images (n, h*w) tiled into one picture with ``rows`` rows and a ``gap``-pixel white border.

    One ``imshow`` instead of one axis per image, so hundreds of images draw in a fraction of a
    second. Values are shown on [0, 1] (white 0, black 1), as ``image_grid`` does.
    """
    imgs = np.clip(_np(images).reshape(-1, *shape), 0.0, 1.0)
    h, w = shape
    cols = int(np.ceil(len(imgs) / rows))
    canvas = np.zeros((rows * (h + gap) + gap, cols * (w + gap) + gap))
    for k, img in enumerate(imgs):
        r, c = divmod(k, cols)
        canvas[gap + r * (h + gap): gap + r * (h + gap) + h, gap + c * (w + gap): gap + c * (w + gap) + w] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(min(0.45 * cols, WIDTH), min(0.45 * rows, 9.0) + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    ax.set_title(title)
    return ax


def latent_manifold(model, n: int = 15, shape: tuple[int, int] = (28, 28), title: str = "", ax=None):
    """The decoder's images over ``latent_quantile_grid(n)``: a model's 2-D latent space as a picture.

    Works for any model with ``latent_dim == 2`` and a ``decode`` method (a VAE's decoder mean, or
    an autoencoder's output).
    """
    if getattr(model, "latent_dim", None) != 2:
        raise ValueError(f"latent_manifold needs a model with a 2-D latent space, got latent_dim="
                         f"{getattr(model, 'latent_dim', None)!r}")
    param = next(model.parameters())
    with torch.no_grad():
        images = model.decode(latent_quantile_grid(n).to(device=param.device, dtype=param.dtype))
    return image_mosaic(images, shape, rows=n, title=title, ax=ax)


def plot_densities(grid, densities: Mapping[str, object], title: str = "", xlabel: str = "x", ax=None):
    """1-D densities evaluated on a common grid, one line per named density; the first is filled.

    Meant for a target density and its approximations: the fill marks the target.
    """
    grid = _np(grid)
    if ax is None:
        _, ax = plt.subplots()
    for i, (name, density) in enumerate(densities.items()):
        values = _np(density)
        ax.plot(grid, values, color=PALETTE[i % len(PALETTE)], lw=2 if i else 1.5, ls="-" if i < 2 else "--",
                label=name)
        if i == 0:
            ax.fill_between(grid, values, color=PALETTE[0], alpha=0.15)
    ax.set_xlabel(xlabel); ax.set_ylabel("density"); ax.set_title(title)
    ax.legend()
    return ax


def class_scatter(z, labels, title: str = "", ax=None):
    """A 2-D code with one colour per class and a legend (for discrete labels such as digits)."""
    z, labels = _np(z), _np(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.8))
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(np.unique(labels)):
        keep = labels == label
        ax.scatter(z[keep, 0], z[keep, 1], s=3, color=cmap(i % 10), label=str(label), alpha=0.7, linewidths=0)
    ax.set_xlabel("$z_1$"); ax.set_ylabel("$z_2$"); ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(title="class", markerscale=4, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return ax


def image_rows(rows: Mapping[str, object], shape: tuple[int, int], title: str = ""):
    """One labelled row of images per entry, e.g. {"clean": x, "noisy": x_noisy, "denoised": x_hat}.

    All rows should hold the same number of images, so that a column shows one example throughout.
    The figure is the book's WIDTH wide, each row as tall as its images and their label.
    """
    per_row = max(len(_np(images).reshape(-1, shape[0] * shape[1])) for images in rows.values())
    image_in = WIDTH * (shape[0] + 2) / (per_row * (shape[1] + 1) + 1)  # a row of image_mosaic
    title_in = 0.25 * (title.count("\n") + 1) + 0.1 if title else 0.0
    fig, axes = plt.subplots(len(rows), 1, figsize=(WIDTH, (image_in + 0.35) * len(rows) + title_in + 0.1),
                             squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        image_mosaic(images, shape, rows=1, ax=ax)
        ax.set_title(label, loc="left", fontsize=10)
    if title:
        fig.suptitle(title)
    return fig


def filter_mosaic(weights, shape: tuple[int, int], rows: int, title: str = "", ax=None, gap: int = 1):
    """Weight vectors (k, h*w) shown as images: red positive, blue negative, white zero, grey gaps.

    Each filter is scaled by its own largest absolute value, so the picture shows every filter's
    pattern, not the filters' relative sizes.
    """
    w = _np(weights).reshape(-1, *shape)
    w = w / np.maximum(np.abs(w).reshape(len(w), -1).max(axis=1), 1e-12)[:, None, None]
    h, wd = shape
    cols = int(np.ceil(len(w) / rows))
    canvas = np.full((rows * (h + gap) + gap, cols * (wd + gap) + gap), np.nan)  # NaN: the grey gaps
    for k, img in enumerate(w):
        r, c = divmod(k, cols)
        canvas[gap + r * (h + gap): gap + r * (h + gap) + h, gap + c * (wd + gap): gap + c * (wd + gap) + wd] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(min(0.45 * cols, WIDTH), min(0.45 * rows, 9.0) + 0.4))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.6")
    ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.axis("off")
    ax.set_title(title)
    return ax


def overlaid_histograms(groups: Mapping[str, object], *, xlabel: str, title: str = "", bins: int = 40,
                        logy: bool = False, ax=None):
    """Normalised step histograms of several named samples on shared bins (to compare their spread)."""
    values = {name: _np(v).ravel() for name, v in groups.items()}
    everything = np.concatenate(list(values.values()))
    edges = np.linspace(everything.min(), everything.max(), bins + 1)
    if ax is None:
        _, ax = plt.subplots()
    for i, (name, v) in enumerate(values.items()):
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.8, color=PALETTE[i % len(PALETTE)], label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel); ax.set_ylabel("density"); ax.set_title(title)
    ax.legend()
    return ax


def labelled_mosaic(images, shape: tuple[int, int], column_labels: Sequence, *, xlabel: str = "",
                    ylabel: str = "", title: str = "", ax=None, gap: int = 1):
    """A table of images, shape (rows, columns, h*w), with a label under each column (e.g. the
    class a conditional model was given) and the axis titles ``xlabel`` and ``ylabel``."""
    images = _np(images)
    if images.ndim != 3 or images.shape[1] != len(column_labels):
        raise ValueError(f"images must have shape (rows, columns, h*w) with one column per label "
                         f"({len(column_labels)}), got {images.shape}")
    rows, cols = images.shape[:2]
    ax = image_mosaic(images.reshape(rows * cols, -1), shape, rows=rows, title=title, ax=ax, gap=gap)
    ax.axis("on")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    width = shape[1]
    ax.set_xticks([gap + c * (width + gap) + (width - 1) / 2 for c in range(cols)], [str(v) for v in column_labels])
    ax.set_yticks([])
    ax.tick_params(length=0)
    ax.set_xlabel(xlabel); ax.set_ylabel(ylabel)
    return ax


def codes_against_prior(codes: Mapping[str, object], prior, title: str = ""):
    """One panel per named set of 2-D codes (an aggregate posterior), drawn over draws from the
    prior in grey, each panel with its own limits, equal aspect and a legend; the panels one
    below the other, the book's WIDTH wide."""
    prior = _np(prior)
    fig, axes = plt.subplots(len(codes), 1, figsize=(WIDTH, 3.0 * len(codes) + (0.4 if title else 0.0)),
                             squeeze=False)
    for i, (ax, (name, z)) in enumerate(zip(axes[:, 0], codes.items())):
        z = _np(z)
        ax.scatter(prior[:, 0], prior[:, 1], s=3, color="0.65", alpha=0.5, linewidths=0, label="prior N(0, I)")
        ax.scatter(z[:, 0], z[:, 1], s=3, color=PALETTE[i % len(PALETTE)], alpha=0.6, linewidths=0, label=name)
        ax.set_xlabel("$z_1$"); ax.set_ylabel("$z_2$"); ax.set_title(name)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(markerscale=4, loc="upper right", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def radial_profiles(clouds: Mapping[str, object], surface=None, r_max: float | None = None, columns: int = 3,
                    title: str = ""):
    """Points of a radially symmetric 3-D surface z = f(sqrt(x^2 + y^2)) seen from the side: one
    panel per named cloud, the radius r on the x-axis and z on the y-axis, with the noiseless
    profile ``surface(r)`` drawn in black. Where a 3-D view hides them, this shows points that
    leave the surface and radii the samples do not reach. Used by the comparison chapter."""
    clouds = {name: _np(points) for name, points in clouds.items()}
    r_max = r_max or max(float(np.hypot(p[:, 0], p[:, 1]).max()) for p in clouds.values())
    rows = -(-len(clouds) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False,
                             sharex=True, sharey=True)
    grid = np.linspace(0, r_max, 200)
    for i, (ax, (name, points)) in enumerate(zip(axes.flat, clouds.items())):
        ax.scatter(np.hypot(points[:, 0], points[:, 1]), points[:, 2], s=1.5, alpha=0.35, linewidths=0,
                   color=PALETTE[i % len(PALETTE)], rasterized=True)
        if surface is not None:
            ax.plot(grid, surface(grid), color="black", lw=1, label="noiseless surface")
        ax.set_title(name)
    for ax in axes.flat[len(clouds):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("radius r = √(x² + y²)")
    for ax in axes[:, 0]:
        ax.set_ylabel("z")
    if surface is not None:
        axes.flat[0].legend(loc="lower left", fontsize=MIN_FONT_PT)
    if title:
        fig.suptitle(title)
    return fig


def bound_curves(runs: Mapping[str, Mapping[str, Sequence[float]]], *, points_per_epoch: int, title: str = "",
                 ylabel: str = "mean ELBO (nats per image)", ax=None):
    """A bound against the number of training points processed, on a log axis: Kingma & Welling's Fig. 2.

    ``runs`` maps each run's name to its named curves, each recorded at the start and after every
    epoch (what ``vaelib.estimators.BoundMonitor`` records), e.g. ``{"latent 2": {"training": [...],
    "held-out": [...]}}``. The start is not drawn (a log axis has no 0). One colour per run; within
    a run the curves are dashed, solid, dotted, in their order.
    """
    _checks.positive_int("points_per_epoch", points_per_epoch)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (run, curves) in enumerate(runs.items()):
        for style, (name, values) in zip(("--", "-", ":"), curves.items()):
            seen = np.arange(1, len(values)) * points_per_epoch
            ax.plot(seen, list(values)[1:], ls=style, marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                    label=f"{run}, {name}")
    ax.set_xscale("log")
    ax.set_xlabel("training points processed"); ax.set_ylabel(ylabel); ax.set_title(title)
    ax.legend(fontsize=9, ncol=2 if sum(len(c) for c in runs.values()) > 4 else 1)
    return ax
