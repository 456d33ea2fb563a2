"""vaelib.interactive: 3-D point clouds as HTML a notebook displays, with plotly.js never from a CDN."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from vaelib import interactive
from vaelib.data import cosine_surface


@pytest.fixture
def fresh_session(monkeypatch):
    """A Python session that has not yet sent plotly.js, outside the book build."""
    monkeypatch.delenv(interactive.PLOTLYJS_ENV, raising=False)
    monkeypatch.setattr(interactive._Session, "plotlyjs_embedded", False)


def _traces(fig):
    return json.loads(fig.figure.to_json())["data"]


def test_one_trace_per_cloud_with_every_point_by_default(cosine_small):
    fig = interactive.point_clouds_3d({"data": cosine_small, "samples": cosine_small[:100]})
    traces = _traces(fig)
    assert [t["name"] for t in traces] == ["data", "samples"]
    assert [t["type"] for t in traces] == ["scatter3d", "scatter3d"]
    points = fig.figure.data[1]
    assert len(points.x) == 100
    np.testing.assert_allclose(np.asarray(points.z), cosine_small[:100, 2].numpy(), rtol=1e-6)


def test_clouds_share_one_scene_with_equal_scale_and_the_books_view():
    fig = interactive.point_clouds_3d({"data": np.random.default_rng(0).normal(size=(50, 3))})
    scene = fig.figure.layout.scene
    assert scene.aspectmode == "data"
    eye = scene.camera.eye
    # matplotlib's elev 25 deg: the camera looks down at the same angle as the static figures.
    assert np.degrees(np.arctan2(eye.z, np.hypot(eye.x, eye.y))) == pytest.approx(25)


def test_max_points_keeps_a_seeded_subset():
    x = cosine_surface(n=1000, seed=0)
    first = interactive.point_clouds_3d({"data": x}, max_points=200, seed=3).figure.data[0]
    again = interactive.point_clouds_3d({"data": x}, max_points=200, seed=3).figure.data[0]
    other = interactive.point_clouds_3d({"data": x}, max_points=200, seed=4).figure.data[0]
    assert len(first.x) == 200
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, other.x)


def test_the_same_figure_gets_the_same_element_id():
    x = cosine_surface(n=100, seed=0)
    assert interactive.point_clouds_3d({"a": x}).div_id == interactive.point_clouds_3d({"a": x}).div_id
    assert interactive.point_clouds_3d({"a": x}).div_id != interactive.point_clouds_3d({"b": x}).div_id


def test_in_the_book_build_no_figure_embeds_plotlyjs(monkeypatch):
    monkeypatch.setenv(interactive.PLOTLYJS_ENV, "page")
    page = interactive.point_clouds_3d({"a": torch.zeros(3, 3)})._repr_html_()
    assert len(page) < 100_000, "the figure carries the plotly.js library; the book's page loads it"
    assert "Plotly.newPlot" in page and interactive.FIGURE_CLASS in page
    assert not re.search(r"<script[^>]+src=", page), "the figure loads a script from somewhere"


def test_in_jupyter_the_first_figure_embeds_plotlyjs_and_later_ones_reuse_it(fresh_session):
    first = interactive.point_clouds_3d({"a": np.zeros((3, 3))})._repr_html_()
    second = interactive.point_clouds_3d({"b": np.ones((3, 3))})._repr_html_()
    library = interactive.plotlyjs_path().read_text(encoding="utf-8")
    assert library[-2000:] in first, "the first figure does not carry plotly.js"
    assert len(second) < 100_000
    for html in (first, second):
        assert not re.search(r"""<script[^>]+src=["']?(https?:)?//""", html), "a figure loads plotly.js from a CDN"


def test_alt_text_names_the_clouds_or_says_what_the_author_wrote():
    fig = interactive.point_clouds_3d({"data": np.zeros((5, 3))}, title="Cosine data")
    assert "data (5 points)" in fig.alt and "Cosine data" in fig.alt
    assert 'aria-label="Interactive 3-D scatter plot' in fig.to_html(include_plotlyjs=False)
    written = interactive.point_clouds_3d({"data": np.zeros((5, 3))}, alt='The "data" as a bump')
    assert 'aria-label="The &quot;data&quot; as a bump"' in written.to_html(include_plotlyjs=False)


def test_the_figure_links_nowhere_off_the_page():
    html = interactive.point_clouds_3d({"a": np.zeros((3, 3))}).to_html(include_plotlyjs=False)
    assert not re.findall(r"https?://", html)
    assert '"displaylogo": false' in html


@pytest.mark.parametrize("clouds, message", [
    ({}, "non-empty mapping"),
    ([np.zeros((3, 3))], "non-empty mapping"),
    ({"flat": np.zeros((4, 2))}, r"'flat' has shape \(4, 2\); pass an \(n, 3\) array"),
    ({"empty": np.zeros((0, 3))}, "n >= 1"),
    ({"bad": np.array([[0.0, np.nan, 1.0]])}, "NaN or infinite"),
])
def test_bad_clouds_get_errors_that_say_what_to_do(clouds, message):
    with pytest.raises(ValueError, match=message):
        interactive.point_clouds_3d(clouds)


def test_max_points_must_be_positive():
    with pytest.raises(ValueError, match="positive number of points or None"):
        interactive.point_clouds_3d({"a": np.zeros((3, 3))}, max_points=0)


def test_importing_vaelib_does_not_import_plotly():
    code = "import sys, vaelib, vaelib.interactive; print('plotly' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
