"""Interactive 3-D point clouds that a reader can turn, drawn with plotly (imported lazily).

The static matplotlib figures (``vaelib.plots``) stay the book's figures for print and PDF; these
are the same clouds as an HTML output a notebook cell displays. Where plotly.js comes from decides
whether a figure works offline, and it never comes from a CDN:

- In the built book, the page loads plotly.js from the book's own ``_static`` folder (the book's
  Sphinx extension ``book/_ext/vaebook.py`` copies it there from the plotly package and adds it to
  each page that shows a plotly figure). The build sets ``VAELIB_PLOTLYJS=page`` for the chapters it
  executes, so their figures do not embed the library.
- Anywhere else (Jupyter, the notebook tests) the first figure shown in a Python session embeds
  plotly.js (about 5 MB) in its output and later figures reuse it, so a notebook works with no
  network. After reloading a page, run the first figure's cell again before a later one.
"""
from __future__ import annotations

import hashlib
import html
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Set to "page" by the book build: the page itself loads plotly.js, figures must not embed it.
PLOTLYJS_ENV = "VAELIB_PLOTLYJS"
# Marks the wrapper of every figure, for the book's stylesheet and tests.
FIGURE_CLASS = "vaelib-plotly-3d"
# No Plotly logo link and no cloud-editing button: nothing on the figure leads off the page.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}
_CAMERA_DISTANCE = 1.9
PLOTLY_MISSING = "vaelib.interactive needs plotly: pip install -r requirements.txt (or pip install plotly)"


class _Session:
    """Whether this Python session has already sent plotly.js to the notebook."""
    plotlyjs_embedded = False


def plotlyjs_path() -> Path:
    """The minified plotly.js that the installed plotly package ships (what the book serves)."""
    try:
        import plotly
    except ImportError as error:
        raise ImportError(PLOTLY_MISSING) from error
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly (pip install -r requirements.txt)")
    return path


@dataclass
class InteractiveFigure:
    """A plotly figure that a notebook displays as HTML (``_repr_html_``); ``figure`` is the
    plotly ``Figure`` itself, for ``figure.write_html(...)`` or further styling, and ``alt`` says
    what it shows to a reader who cannot see it (the figure's accessible name)."""
    figure: object
    alt: str

    @property
    def div_id(self) -> str:
        """A stable element id, so that executing a chapter twice gives the same page."""
        return "vaelib-3d-" + hashlib.sha1(self.figure.to_json().encode()).hexdigest()[:12]

    def to_html(self, include_plotlyjs: bool) -> str:
        """The figure as an HTML fragment, with plotly.js inlined or expected on the page."""
        fragment = self.figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs,
                                       div_id=self.div_id, config=PLOTLY_CONFIG,
                                       default_width="100%")
        return f'<div class="{FIGURE_CLASS}" role="figure" aria-label="{html.escape(self.alt)}">{fragment}</div>'

    def _repr_html_(self) -> str:
        if os.environ.get(PLOTLYJS_ENV) == "page":
            return self.to_html(include_plotlyjs=False)
        include = not _Session.plotlyjs_embedded
        _Session.plotlyjs_embedded = True
        return self.to_html(include_plotlyjs=include)


def _as_points(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    points = np.asarray(value, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"cloud {name!r} has shape {points.shape}; pass an (n, 3) array of points, n >= 1")
    if not np.isfinite(points).all():
        raise ValueError(f"cloud {name!r} holds NaN or infinite values; drop those points first")
    return points


def _camera_eye(elev: float, azim: float) -> dict[str, float]:
    """Plotly's camera position for matplotlib's view angles, so both figures show the same view."""
    e, a = math.radians(elev), math.radians(azim)
    return {"x": _CAMERA_DISTANCE * math.cos(e) * math.cos(a),
            "y": _CAMERA_DISTANCE * math.cos(e) * math.sin(a),
            "z": _CAMERA_DISTANCE * math.sin(e)}


def point_clouds_3d(clouds: Mapping[str, object], *, title: str = "", alt: str | None = None,
                    marker_size: float = 1.5, max_points: int | None = None, seed: int = 0,
                    height: int = 480) -> InteractiveFigure:
    """Several 3-D point clouds in one scene a reader can turn, zoom and toggle (click a legend entry).

    The clouds share the axes, with equal scale on all three, so generated points can be compared
    with the data they should lie on. ``max_points`` keeps a random subset of each larger cloud
    (drawn with ``seed``) to keep the page small; the default keeps every point. ``alt`` describes
    the figure for screen readers; by default it names the clouds and their sizes.
    Used in Part I for the cosine data and in Part IV for the clouds of Figure 1.
    """
    try:
        import plotly.graph_objects as go
    except ImportError as error:
        raise ImportError(PLOTLY_MISSING) from error

    from vaelib.plots import PALETTE, VIEW_3D

    if not isinstance(clouds, Mapping) or not clouds:
        raise ValueError("clouds must be a non-empty mapping {legend name: (n, 3) points}")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points={max_points}; pass a positive number of points or None for all")
    rng = np.random.default_rng(seed)
    figure = go.Figure()
    described = []
    for i, (name, value) in enumerate(clouds.items()):
        points = _as_points(name, value)
        described.append(f"{name} ({len(points):,} points)")
        if max_points is not None and len(points) > max_points:
            points = points[np.sort(rng.choice(len(points), size=max_points, replace=False))]
        figure.add_trace(go.Scatter3d(
            x=points[:, 0].astype(np.float32), y=points[:, 1].astype(np.float32),
            z=points[:, 2].astype(np.float32), mode="markers", name=str(name),
            marker={"size": marker_size, "color": PALETTE[i % len(PALETTE)], "opacity": 0.6}))
    top = 70 if title else 35  # the title, then a row for the legend
    figure.update_layout(
        height=height, template="plotly_white", margin={"l": 0, "r": 0, "t": top, "b": 0},
        title={"text": title, "x": 0.02, "xanchor": "left", "y": 1.0, "yanchor": "top", "pad": {"t": 8}},
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom",
                "itemsizing": "constant"},
        scene={"aspectmode": "data", "xaxis_title": "x₁", "yaxis_title": "x₂", "zaxis_title": "x₃",
               "camera": {"eye": _camera_eye(**VIEW_3D)}})
    if alt is None:
        alt = f"Interactive 3-D scatter plot{': ' + title if title else ''}. Clouds: {'; '.join(described)}."
    return InteractiveFigure(figure, alt)
