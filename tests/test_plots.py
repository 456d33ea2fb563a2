"""The book's figure helpers (vaelib.plots): what they promise a reader."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vaelib import plots  # noqa: E402
from vaelib.data import cosine_surface  # noqa: E402


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
