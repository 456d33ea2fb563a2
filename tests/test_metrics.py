"""Tests of vaelib.metrics: the surface distance against brute force and its optimality conditions,
the two-sample distances against naive O(n^2) sums, and each metric's behaviour on the cases that
matter: two draws of the data (~0, judged against the measured noise level), a growing shift, and a
point mass placed on the surface (surface distance 0, yet bad coverage and a large MMD)."""
import math

import pytest
import torch

from vaelib import metrics
from vaelib.data import COSINE_HALF_WIDTH, cosine_height, cosine_surface

H = COSINE_HALF_WIDTH
# A metric value counts as "~0" / "the data's level" when it lies within this many standard deviations
# of the noise level measured on fresh data draws; a real difference must exceed it.
NOISE_SIGMAS = 4.0


def awkward_points() -> torch.Tensor:
    """Random points around the surface and beyond the square, plus the hard cases: the z-axis above
    and below, near the edges and corners, outside the square, far away, close to the axis."""
    g = torch.Generator().manual_seed(5)
    random = (torch.rand(60, 3, generator=g, dtype=torch.float64) * 2 - 1) * 3.0
    special = torch.tensor([[0, 0, 3.0], [0, 0, -3.0], [0, 0, 0.5], [0, 0, 1.0], [2, 2, 0], [-2, 1.9, -1],
                            [5, -4, 3], [1.5, 1.5, -0.3], [1.49, 0.2, 0.9], [-1.5, -1.5, 5.0], [0, 0, -50.0],
                            [0.7, -0.7, -2.0], [1e-12, 0, 0.2], [-3, 0.1, -0.06],
                            # near the z-axis between the surface's heights: two almost equal minima
                            # on opposite sides of the axis (the nearer one wins by ~4 * radius)
                            [0.01, 0.005, 0.3], [-0.02, 0.01, 0.6], [3e-5, 0, 0.0], [0, -1e-6, -0.5]],
                           dtype=torch.float64)
    return torch.cat([random, special])


def brute_force_distance(points: torch.Tensor, grid_points: int) -> torch.Tensor:
    """The distance to the nearest node of a fine (x, y) grid on the surface. Every node is tried, by
    blocks (its squared distance up to the constant |p|^2, from a matrix product); the best node's
    distance is then recomputed directly."""
    axis = torch.linspace(-H, H, grid_points, dtype=torch.float64)
    xy = torch.cartesian_prod(axis, axis)
    surface = torch.cat([xy, cosine_height(xy)[:, None]], dim=1)
    best_score = torch.full((len(points),), math.inf, dtype=torch.float64)
    best_node = torch.zeros(len(points), dtype=torch.long)
    for start in range(0, len(surface), 16384):
        block = surface[start:start + 16384]
        score, node = (block.square().sum(1)[:, None] - 2 * block @ points.T).min(dim=0)
        better = score < best_score
        best_score, best_node = torch.where(better, score, best_score), torch.where(better, node + start, best_node)
    return (surface[best_node] - points).norm(dim=1)


def surface_gradient(nearest: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """d/d(x, y) of the squared distance from points to (x, y, cos r), evaluated at nearest's (x, y)."""
    x, y, z = nearest.unbind(1)
    r = nearest[:, :2].norm(dim=1)
    sinc = torch.where(r > 1e-8, torch.sin(r) / r.clamp(min=1e-300), torch.ones_like(r))
    vertical = torch.cos(r) - points[:, 2]
    return torch.stack([2 * (x - points[:, 0]) - 2 * vertical * sinc * x,
                        2 * (y - points[:, 1]) - 2 * vertical * sinc * y], dim=1)


def on_surface(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * H
    return torch.cat([xy, cosine_height(xy)[:, None]], dim=1)


def point_mass(n: int) -> torch.Tensor:
    xy = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    return torch.cat([xy, cosine_height(xy)[:, None]], dim=1).expand(n, 3).clone()


def naive_mmd2(x, y, bandwidth):
    def mean_kernel(a, b, same):
        k = torch.exp(-torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") ** 2 / (2 * bandwidth**2))
        return (k.sum() - k.diagonal().sum()) / (len(a) * (len(a) - 1)) if same else k.mean()
    return (mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False)).item()


def naive_energy(x, y):
    def mean_distance(a, b, same):
        d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
        return d.sum() / (len(a) * (len(a) - 1)) if same else d.mean()
    return (2 * mean_distance(x, y, False) - mean_distance(x, x, True) - mean_distance(y, y, True)).item()


# --- the surface distance ------------------------------------------------------------------------

def test_surface_distance_agrees_with_brute_force_on_a_fine_grid():
    points = awkward_points()
    nearest, distance = metrics.nearest_surface_points(points)
    grid_points = 801
    spacing = 2 * H / (grid_points - 1)
    brute = brute_force_distance(points, grid_points)
    # A grid node is a surface point, so it can never beat the true nearest point; and the nearest node
    # lies within spacing * sqrt(2) / 2 of it in (x, y) and, as |grad cos r| <= 1, within spacing in 3-D.
    assert (distance <= brute + 1e-12).all()
    assert (brute - distance).max() <= spacing
    assert nearest[:, :2].abs().max() <= H
    assert torch.allclose(nearest[:, 2], cosine_height(nearest[:, :2]), rtol=0, atol=1e-15)
    assert torch.allclose(distance, (points - nearest).norm(dim=1), rtol=0, atol=1e-15)


def test_near_the_axis_the_nearer_of_two_almost_equal_minima_wins():
    """Close to the z-axis, at heights the surface reaches, the squared distance along the radial line has
    two minima whose values differ by only ~4 * radius * arccos(z): a 1-D brute force along that line
    (which holds the nearest point, by the radial symmetry the 2-D test above checks) fine enough to
    tell them apart must agree to 1e-9."""
    radius = torch.tensor([1e-5, 3e-5, 1e-4, 1e-3, 1e-2, 5e-2], dtype=torch.float64)
    height = torch.tensor([-0.9, -0.5, 0.0, 0.3, 0.6, 0.95], dtype=torch.float64)
    radius, height = torch.cartesian_prod(radius, height).unbind(1)
    angle = torch.linspace(0, 2 * math.pi, len(radius) + 1, dtype=torch.float64)[:-1]
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), height], dim=1)
    reach = H / torch.maximum(angle.cos().abs(), angle.sin().abs())  # where the line leaves the square
    brute = []
    for r, z, end in zip(radius, height, reach):
        t = torch.linspace(-end, end, 600_001, dtype=torch.float64)  # spacing below 7.1e-6
        brute.append(((t - r) ** 2 + (torch.cos(t) - z) ** 2).min().sqrt())
    brute = torch.stack(brute)
    distance = metrics.surface_distance(points)
    assert (distance <= brute + 1e-12).all()
    assert (brute - distance).max() < 1e-9


def test_nearest_points_satisfy_the_optimality_conditions():
    """Exactness: at the nearest point the squared distance's gradient vanishes along every free
    direction and points outwards where the point sits on an edge of the square."""
    g = torch.Generator().manual_seed(11)
    points = torch.cat([awkward_points(), (torch.rand(1000, 3, generator=g, dtype=torch.float64) * 2 - 1) * 2.5])
    nearest, _ = metrics.nearest_surface_points(points)
    gradient = surface_gradient(nearest, points)
    at_upper, at_lower = nearest[:, :2] >= H - 1e-12, nearest[:, :2] <= -H + 1e-12
    free = ~(at_upper | at_lower)
    assert gradient[free].abs().max() < 1e-6
    assert (gradient[at_upper] < 1e-6).all() and (gradient[at_lower] > -1e-6).all()
    assert at_upper.any() and at_lower.any() and free.any()


def test_points_on_the_surface_are_at_distance_zero_and_the_distance_never_exceeds_the_vertical_gap():
    surface = on_surface(500, seed=1)
    assert metrics.surface_distance(surface).max() < metrics.SURFACE_DISTANCE_TOLERANCE
    noisy = cosine_surface(2000, seed=2).double()
    inside = noisy[noisy[:, :2].abs().amax(dim=1) <= H]
    vertical_gap = (inside[:, 2] - cosine_height(inside[:, :2])).abs()
    assert (metrics.surface_distance(inside) <= vertical_gap + 1e-12).all()
    assert metrics.surface_distance(inside).mean() < 0.9 * vertical_gap.mean()


def test_surface_distance_summary_and_subsampling():
    points = cosine_surface(3000, seed=4)
    summary = metrics.surface_distance_summary(points)
    distance = metrics.surface_distance(points)
    assert summary["mean"] == pytest.approx(distance.mean().item(), rel=1e-12)
    assert summary["median"] <= summary["p90"] <= summary["max"] == distance.max().item()
    sub = metrics.surface_distance_summary(points, max_points=500, seed=1)
    assert sub == metrics.surface_distance_summary(points, max_points=500, seed=1)
    assert sub != metrics.surface_distance_summary(points, max_points=500, seed=2)
    assert metrics.surface_distance_summary(points, max_points=5000) == summary


# --- each metric: two draws of the data, a growing shift, a point mass on the surface -----------------

def test_two_sample_distances_are_zero_for_two_draws_of_the_data_within_their_noise_level():
    n = 500
    bandwidth = metrics.median_bandwidth(cosine_surface(n, seed=100))
    for metric in (lambda a, b: metrics.mmd2(a, b, bandwidth=bandwidth), metrics.energy_distance):
        noise = metrics.noise_level(metric, cosine_surface, n, repeats=8, seed=200)
        assert noise.std > 0
        # Unbiased: the mean over draws is 0 within its own standard error.
        assert abs(noise.mean) <= NOISE_SIGMAS * noise.std / math.sqrt(len(noise.values))
        assert abs(metric(cosine_surface(n, seed=300), cosine_surface(n, seed=301))) <= NOISE_SIGMAS * noise.std


def test_every_metric_grows_with_a_shift():
    n = 1000
    data, reference = cosine_surface(n, seed=1), cosine_surface(n, seed=2)
    bandwidth = metrics.median_bandwidth(reference)
    shifts = (0.0, 0.1, 0.2, 0.4, 0.8)
    up = torch.tensor([0.0, 0.0, 1.0])
    scores = {name: [] for name in ("surface", "coverage", "mmd2", "energy")}
    cells = []
    for shift in shifts:
        shifted = data + shift * up
        scores["surface"].append(metrics.surface_distance(shifted).mean().item())
        scores["coverage"].append(metrics.coverage_distance(shifted))
        scores["mmd2"].append(metrics.mmd2(shifted, reference, bandwidth=bandwidth))
        scores["energy"].append(metrics.energy_distance(shifted, reference))
        # 4,000 samples fill all 400 cells (10 a cell), so that sampling gaps do not blur the trend.
        cells.append(metrics.cell_coverage(cosine_surface(4000, seed=3) + shift * up))
    for name, values in scores.items():
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)
    assert cells[0] == 1 and all(a >= b for a, b in zip(cells, cells[1:])) and cells[-1] < 0.5, cells
    noise = metrics.noise_level(lambda a, b: metrics.mmd2(a, b, bandwidth=bandwidth), cosine_surface, n, seed=50)
    assert scores["mmd2"][1] > noise.mean + NOISE_SIGMAS * noise.std  # a shift of 0.1 is detected


def test_one_sample_metrics_of_a_fresh_draw_lie_at_the_data_level():
    n = 1000
    for metric in (lambda a: metrics.surface_distance(a).mean().item(), metrics.coverage_distance,
                   metrics.cell_coverage):
        level = metrics.noise_level(metric, cosine_surface, n, draws=1, repeats=6, seed=400)
        assert abs(metric(cosine_surface(n, seed=500)) - level.mean) <= NOISE_SIGMAS * level.std + 1e-12


def test_a_point_mass_on_the_surface_has_distance_zero_but_bad_coverage_and_mmd():
    n = 1000
    mass, data, other = point_mass(n), cosine_surface(n, seed=7), cosine_surface(n, seed=8)
    quality = metrics.cosine_sample_quality(mass, data)
    fair = metrics.cosine_sample_quality(other, data)
    bandwidth = metrics.median_bandwidth(data)
    mmd_noise = metrics.noise_level(lambda a, b: metrics.mmd2(a, b, bandwidth=bandwidth), cosine_surface, n, seed=60)
    energy_noise = metrics.noise_level(metrics.energy_distance, cosine_surface, n, seed=60)
    assert quality["surface_distance"] < metrics.SURFACE_DISTANCE_TOLERANCE < fair["surface_distance"]
    assert quality["cell_coverage"] == 1 / metrics.DEFAULT_CELLS_PER_SIDE**2 and fair["cell_coverage"] > 0.8
    assert quality["coverage_distance"] > 10 * fair["coverage_distance"]
    assert quality["mmd2"] > mmd_noise.mean + 100 * mmd_noise.std
    assert quality["energy"] > energy_noise.mean + 100 * energy_noise.std


def test_cosine_sample_quality_matches_the_separate_metrics():
    samples, data = cosine_surface(1500, seed=9), cosine_surface(1200, seed=10)
    quality = metrics.cosine_sample_quality(samples, data, max_points=1000, seed=3)
    generator = torch.Generator().manual_seed(3)
    samples_used = samples[torch.randperm(1500, generator=generator)[:1000]]
    data_used = data[torch.randperm(1200, generator=generator)[:1000]]
    bandwidth = metrics.median_bandwidth(data_used, seed=3)
    summary = metrics.surface_distance_summary(samples_used)
    expected = {"surface_distance": summary["mean"], "surface_distance_p90": summary["p90"],
                "coverage_distance": metrics.coverage_distance(samples_used),
                "cell_coverage": metrics.cell_coverage(samples_used),
                "mmd2": metrics.mmd2(samples_used, data_used, bandwidth=bandwidth),
                "energy": metrics.energy_distance(samples_used, data_used)}
    assert quality == pytest.approx(expected, rel=1e-10, abs=1e-15)


# --- the two-sample distances against naive sums ----------------------------------------------------

def test_mmd_and_energy_agree_with_naive_sums_and_do_not_depend_on_chunk_size():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 4, generator=g, dtype=torch.float64)
    y = torch.randn(53, 4, generator=g, dtype=torch.float64) * 1.3 + 0.4
    bandwidth = metrics.median_bandwidth(x, y)
    for chunk_size in (1, 7, 36, 37, 512):
        assert metrics.mmd2(x, y, chunk_size=chunk_size) == pytest.approx(naive_mmd2(x, y, bandwidth), rel=1e-10)
        assert metrics.energy_distance(x, y, chunk_size=chunk_size) == pytest.approx(naive_energy(x, y), rel=1e-10)
    assert metrics.mmd2(x, y, bandwidth=0.7) == pytest.approx(naive_mmd2(x, y, 0.7), rel=1e-10)


def test_median_bandwidth_is_the_median_pairwise_distance_of_the_pooled_sample():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 2, generator=g), torch.randn(41, 2, generator=g) + 1
    pooled = torch.cat([x, y]).double()
    assert metrics.median_bandwidth(x, y) == pytest.approx(torch.pdist(pooled).median().item(), rel=1e-12)
    with pytest.raises(ValueError, match="median distance is 0"):
        metrics.median_bandwidth(torch.zeros(10, 3))


def test_subsampling_is_seeded_and_leaves_the_global_generator_alone():
    x, y = cosine_surface(3000, seed=1), cosine_surface(3000, seed=2)
    state = torch.get_rng_state()
    first = metrics.mmd2(x, y, max_points=300, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    assert metrics.mmd2(x, y, max_points=300, seed=5) == first
    assert metrics.mmd2(x, y, max_points=300, seed=6) != first
    assert metrics.energy_distance(x[:200], y[:200], max_points=400) == metrics.energy_distance(x[:200], y[:200])


def test_noise_level_draws_fresh_seeds_or_disjoint_rows_of_a_pool():
    seen = []

    def sampler(n, seed):
        seen.append(seed)
        return cosine_surface(n, seed=seed)

    level = metrics.noise_level(metrics.energy_distance, sampler, 50, repeats=3, seed=10)
    assert seen == [10, 11, 12, 13, 14, 15] and len(level.values) == 3
    pool = torch.arange(200, dtype=torch.float64)[:, None]
    used = metrics.noise_level(lambda a, b: float(len(set(a[:, 0].tolist()) | set(b[:, 0].tolist()))), pool, 100)
    assert used.values == (200.0,) * 5  # the two draws of each repeat never share a row
    assert metrics.noise_level(metrics.energy_distance, cosine_surface(400, seed=0), 100, seed=1) == \
        metrics.noise_level(metrics.energy_distance, cosine_surface(400, seed=0), 100, seed=1)


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: metrics.surface_distance(torch.zeros(5, 2)), ValueError, "3 features"),
    (lambda: metrics.surface_distance(torch.zeros(5)), ValueError, r"shape \(n, d\)"),
    (lambda: metrics.surface_distance([[0.0, 0.0, 1.0]]), TypeError, "torch.Tensor"),
    (lambda: metrics.surface_distance(torch.tensor([[0.0, 0.0, math.nan]])), ValueError, "non-finite"),
    (lambda: metrics.surface_distance(torch.zeros(0, 3)), ValueError, "empty"),
    (lambda: metrics.surface_distance(torch.zeros(3, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: metrics.surface_distance(torch.zeros(3, 3), half_width=0.0), ValueError, "half_width"),
    (lambda: metrics.surface_distance_summary(torch.zeros(3, 3), max_points=0), ValueError, "max_points"),
    (lambda: metrics.cell_coverage(torch.zeros(3, 3), cells_per_side=0), ValueError, "cells_per_side"),
    (lambda: metrics.cell_coverage(torch.zeros(3, 3), within=-1.0), ValueError, "within"),
    (lambda: metrics.coverage_distance(torch.zeros(3, 3), n_reference=0), ValueError, "n_reference"),
    (lambda: metrics.mmd2(torch.zeros(5, 3), torch.zeros(5, 2)), ValueError, "same number of features"),
    (lambda: metrics.mmd2(torch.zeros(1, 3), torch.ones(5, 3)), ValueError, "at least 2 points"),
    (lambda: metrics.energy_distance(torch.randn(5, 3), torch.randn(5, 3), max_points=1), ValueError,
     "at least 2"),
    (lambda: metrics.mmd2(torch.randn(5, 3), torch.randn(5, 3), bandwidth=0.0), ValueError, "bandwidth"),
    (lambda: metrics.mmd2(torch.randn(5, 3), torch.randn(5, 3), chunk_size=0), ValueError, "chunk_size"),
    (lambda: metrics.energy_distance(torch.randn(5, 3), torch.randn(5, 3), seed=-1), ValueError, "seed"),
    (lambda: metrics.noise_level(metrics.mmd2, torch.randn(10, 3), 6), ValueError, "disjoint draws"),
    (lambda: metrics.noise_level(metrics.mmd2, "data", 6), TypeError, "sampler"),
    (lambda: metrics.noise_level(metrics.mmd2, cosine_surface, 6, repeats=1), ValueError, "repeats"),
    (lambda: cosine_height(torch.zeros(4, 3)), ValueError, r"\(\.\.\., 2\)"),
])
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_reconstruction_and_kl_scores_a_vae_both_ways_in_float64():
    import vaelib
    from vaelib.losses import gaussian_kl
    from vaelib.metrics import reconstruction_and_kl

    vaelib.seed_everything(0)
    model = vaelib.VAE(3)
    x = cosine_surface(200, seed=3)
    scores = reconstruction_and_kl(model, x, seed=4)
    assert scores == reconstruction_and_kl(model, x, seed=4)  # seeded: deterministic
    mu, logvar = model.encode(x)
    at_mean = (x - model.decode(mu)).pow(2).sum(1).mean().item()
    assert scores["recon_mean"] == pytest.approx(at_mean, rel=1e-5)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(4))
    sampled = (x - model.decode(mu + torch.exp(0.5 * logvar) * eps)).pow(2).sum(1).mean().item()
    assert scores["recon_sampled"] == pytest.approx(sampled, rel=1e-5)
    assert scores["recon_sampled"] != scores["recon_mean"]
    assert scores["kl"] == pytest.approx(gaussian_kl(mu.double(), logvar.double()).mean().item(), rel=1e-12)
    assert model.training  # left as it was


# --- numbers at the edges --------------------------------------------------------------------------

def test_the_two_sample_distances_are_finite_and_scale_exactly_at_any_magnitude():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(60, 3, generator=generator, dtype=torch.float64) + 0.5
    energy, mmd = metrics.energy_distance(x, y), metrics.mmd2(x, y)
    for factor in (2.0**700, 2.0**-700):  # a power of two: the scaled data are exactly the data, scaled
        assert metrics.energy_distance(x * factor, y * factor) == pytest.approx(energy * factor, rel=1e-12)
        assert metrics.mmd2(x * factor, y * factor) == pytest.approx(mmd, rel=1e-12)
        assert metrics.median_bandwidth(x * factor) == pytest.approx(metrics.median_bandwidth(x) * factor, rel=1e-12)
    assert metrics.energy_distance(x * 1e200, y * 1e200) == pytest.approx(energy * 1e200, rel=1e-9)
    # a bandwidth far below every distance: the kernel is 0 between distinct points; far above: 1
    assert metrics.mmd2(x, y, bandwidth=1e-300) == 0.0
    assert abs(metrics.mmd2(x, y, bandwidth=1e200)) < 1e-12
    data = cosine_surface(300, seed=1)
    quality = metrics.cosine_sample_quality(cosine_surface(300, seed=2).double() * 1e30, data)
    assert 0 <= quality["mmd2"] <= 2 and all(math.isfinite(v) for v in quality.values())


def test_results_that_cannot_be_numbers_are_errors():
    same = torch.zeros(40, 3)
    with pytest.raises(ValueError, match="every point of x and y is the same point"):
        metrics.energy_distance(same, same)
    huge = torch.tensor([[1.7e308], [1.6e308]], dtype=torch.float64)
    with pytest.raises(ValueError, match="energy_distance is inf for these samples"):
        metrics.energy_distance(huge, -huge)
    with pytest.raises(ValueError, match="must lie within 1e\\+100 of the origin"):
        metrics.surface_distance(cosine_surface(10, seed=0).double() * 1e200)


def test_mean_std_is_exact_near_the_largest_float_and_refuses_what_is_not_a_number():
    from vaelib.claims import mean_std

    assert mean_std([1e308, 1e308]) == {"mean": 1e308, "std": 0.0}
    assert mean_std([1e308, -1e308])["std"] == pytest.approx(math.sqrt(2) * 1e308)
    with pytest.raises(ValueError, match="not finite"):
        mean_std([1.0, float("nan")])


# ------------------------------------------------------------------------------------------------
# ReferenceSums: the data's own pair sums computed once for many clouds scored against it

def test_shared_reference_sums_give_the_same_numbers_and_are_computed_once(monkeypatch):
    from vaelib.metrics import _pairs

    data = cosine_surface(300, seed=10)
    clouds = [cosine_surface(310, seed=11), cosine_surface(250, seed=12) * 1.1, torch.randn(280, 3)]
    alone = [metrics.cosine_sample_quality(cloud, data, bandwidth=0.8) for cloud in clouds]
    energies = [metrics.energy_distance(cloud, data) for cloud in clouds]
    mmds = [metrics.mmd2(cloud, data, bandwidth=0.8) for cloud in clouds]

    own_sums = []
    original = _pairs.pair_sums
    monkeypatch.setattr(_pairs, "pair_sums", lambda a, b, *args, same: (
        own_sums.append(len(a)) if same and a is b and len(a) == len(data) else None) or original(a, b, *args, same=same))
    shared = metrics.ReferenceSums()
    assert [metrics.cosine_sample_quality(cloud, data, bandwidth=0.8, reference_sums=shared) for cloud in clouds] == alone
    assert [metrics.energy_distance(cloud, data, reference_sums=shared) for cloud in clouds] == energies
    assert [metrics.mmd2(cloud, data, bandwidth=0.8, reference_sums=shared) for cloud in clouds] == mmds
    # once per kind of sum (kernel and distance together, distance alone, kernel alone), not per cloud
    assert len(own_sums) == 3


def test_reference_sums_of_other_data_are_never_reused():
    first, second = cosine_surface(200, seed=20), cosine_surface(200, seed=21)
    cloud = cosine_surface(200, seed=22)
    shared = metrics.ReferenceSums()
    assert metrics.energy_distance(cloud, first, reference_sums=shared) == metrics.energy_distance(cloud, first)
    assert metrics.energy_distance(cloud, second, reference_sums=shared) == metrics.energy_distance(cloud, second)
    # the same data subsampled differently (another seed) is other data too
    subsampled = [metrics.mmd2(cloud, first, bandwidth=0.5, max_points=150, seed=s, reference_sums=shared)
                  for s in (0, 1, 0)]
    assert subsampled == [metrics.mmd2(cloud, first, bandwidth=0.5, max_points=150, seed=s) for s in (0, 1, 0)]
