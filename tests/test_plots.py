"""The book's figure helpers (vaelib.plots): what they promise a reader."""
import io
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vaelib import plots  # noqa: E402
from vaelib.data import cosine_surface  # noqa: E402
from vaelib.train import History  # noqa: E402


def test_a_collapsed_cloud_is_drawn_large_and_says_where_it_is():
    data = cosine_surface(500, seed=0)
    spot = data.mean(0) + 1e-4 * torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    fig = plots.point_clouds_3d({"data": data, "collapsed": spot, "spread": data + 0.1})
    titles = [ax.get_title() for ax in fig.axes]
    assert "all within" in titles[1] and "all within" not in titles[0] + titles[2]
    sizes = [ax.collections[0].get_sizes()[0] for ax in fig.axes]
    assert sizes[1] > 10 * sizes[0]


def test_radial_profiles_put_radius_against_height():
    data = cosine_surface(300, noise=0.0, seed=0)
    fig = plots.radial_profiles({"on the surface": data}, surface=np.cos)
    points = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 1], np.cos(points[:, 0]), atol=1e-5)


def _shown(fig):
    """(width px, height px, smallest text px) of the figure as a chapter shows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no helper draws text under the book's smallest size
        return plots.png_facts(plots.figure_png(fig))


def test_a_figure_records_its_smallest_text_in_its_png():
    plots.use_book_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("a title")
    width, height, smallest = _shown(fig)
    assert (width, height) == (471, 371)  # plots.WIDTH x 3.6 inches at plots.DPI, cropped as Jupyter does
    assert smallest == pytest.approx(11 * plots.DPI / 72, abs=0.01)  # the tick labels, once drawn
    ax.legend(["a line"], fontsize=9.5)
    assert _shown(fig)[2] == pytest.approx(9.5 * plots.DPI / 72, abs=0.01)
    plain = io.BytesIO()
    fig.savefig(plain, format="png")
    assert plots.png_facts(plain.getvalue())[2] is None  # drawn otherwise: nothing recorded
    plt.close(fig)


def test_text_under_the_books_smallest_size_warns():
    plots.use_book_style()
    fig, ax = plt.subplots()
    ax.set_title("tiny", fontsize=plots.MIN_FONT_PT - 1)
    with pytest.warns(UserWarning, match="under the book's smallest"):
        plots.figure_png(fig)
    plt.close(fig)


def test_png_facts_refuses_what_is_not_a_png():
    with pytest.raises(ValueError, match="not a PNG"):
        plots.png_facts(b"GIF89a")


def test_the_helpers_figures_fit_a_phone_with_readable_text():
    """At their own sizes the multi-panel helpers' figures shrink to a 390-px phone's column with
    their smallest text still MIN_TEXT_PX high (the panels stacked, the book's WIDTH wide)."""
    plots.use_book_style()
    data = cosine_surface(300, seed=0)
    digits = torch.rand(12, 64, generator=torch.Generator().manual_seed(0))
    codes = {name: torch.randn(200, 2, generator=torch.Generator().manual_seed(i))
             for i, name in enumerate(["AE", "AAE", "VAE"])}
    figures = {
        "codes_against_prior": plots.codes_against_prior(codes, torch.randn(300, 2), title="codes"),
        "image_rows": plots.image_rows({"AE": digits, "AAE": digits, "VAE": digits}, (8, 8),
                                       title="twelve draws\n(seed 0)"),
        "image_mosaic": plots.image_mosaic(digits, (8, 8), rows=1, title="a row").figure,
        "plot_history": plots.plot_history(History({"loss": [3.0, 2.0, 1.5]}), title="history"),
        "radial_profiles": plots.radial_profiles({"data": data}, surface=np.cos, columns=1),
    }
    for name, fig in figures.items():
        width, _, smallest = _shown(fig)
        narrowest = width * plots.MIN_TEXT_PX / smallest
        assert narrowest <= plots.PHONE_COLUMN_PX, (
            f"{name}: {width} px wide with {smallest:.1f}-px text, it cannot shrink below {narrowest:.0f} px")
        plt.close(fig)
