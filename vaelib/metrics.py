"""Measured sample quality of a generative model: how close its samples come to the data, how much of
the data they reach, and how far their distribution is from the data's.

Used by the comparison chapter (Part III), which scores every trained model with these numbers
instead of judging its sample cloud by eye.

For data with a known generating surface (the cosine surface of ``vaelib.data.cosine_surface``):

* ``nearest_surface_points`` / ``surface_distance``: the true Euclidean distance from each point to
  the nearest point of the noiseless surface; ``surface_distance_summary`` summarises it.
* ``coverage_distance``: the mean distance from surface points spread uniformly over the square to
  their nearest sample (small when the samples reach everywhere).
* ``cell_coverage``: the fraction of a grid of surface cells that receive a sample lying near the surface.

For any data, of any dimension:

* ``mmd2``: the unbiased squared maximum mean discrepancy with a Gaussian kernel;
  ``median_bandwidth`` is its bandwidth rule.
* ``energy_distance``: the unbiased energy distance.
* ``noise_level``: a metric between independent fresh draws of the data: the level below which a
  difference between two models is noise.

``cosine_sample_quality`` computes every metric above at once for samples of the cosine surface.

And for a trained VAE on data, how well it fits: ``reconstruction_and_kl`` (the reconstruction
error at a sampled code and at the posterior mean, and the KL from the prior, in float64).

A generator that puts every point on one spot of the surface has surface distance 0; only the
coverage and two-sample metrics expose it, which is why they come together. All distances are in
the data's own units; all computations run in float64; every random choice takes a seed; PyTorch
runs on ``vaelib.threads.torch_threads()`` threads inside each function.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaelib import _checks, threads
from vaelib.data import COSINE_HALF_WIDTH, COSINE_NOISE, cosine_height, cosine_surface
from vaelib.losses import gaussian_kl

# Surface distance: the spacing of the 1-D grid along each candidate segment, the grid minima refined per
# segment (the radial line has at most three local minima; four leaves a margin), the safeguarded Newton steps that
# refine them (quadratic convergence from a grid step of 0.025 to ~1e-12), and the finite-difference step.
_GRID_SPACING = 0.025
_MINIMA_REFINED = 4
_NEWTON_STEPS = 6
_DIFFERENCE_STEP = 1e-5
SURFACE_DISTANCE_TOLERANCE = 1e-9
_POINTS_PER_CHUNK = 2048

DEFAULT_CHUNK_SIZE = 512
DEFAULT_CELLS_PER_SIDE = 20
DEFAULT_WITHIN = 3 * COSINE_NOISE
DEFAULT_REFERENCE_POINTS = 2000
MEDIAN_MAX_POINTS = 1000


# --- distance to the cosine surface ------------------------------------------------------------

@threads.limited()
def nearest_surface_points(points: torch.Tensor, *, half_width: float = COSINE_HALF_WIDTH
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest point of the noiseless cosine surface to each point, and the distance to it.

    The surface is z = cos(sqrt(x^2 + y^2)) over the square [-half_width, half_width]^2, the one
    ``vaelib.data.cosine_surface`` samples (``vaelib.data.cosine_height``). The distance is the true
    nearest-point Euclidean distance in 3-D, not the vertical gap |z - cos r|: on the slopes and near
    the square's edges the two differ, and for points beyond the square the nearest point lies on its
    edge. Used by the comparison chapter (Part III).

    How: the surface is radially symmetric, so a nearest point in the square's interior lies on the
    ray from the origin through the point's (x, y); otherwise it lies on one of the four edges. Each of
    these segments is searched on a grid, and the best grid minima are refined by
    safeguarded Newton steps, so the distance is exact to ``SURFACE_DISTANCE_TOLERANCE`` (1e-9).

    Returns ``(nearest, distance)``: float64 tensors of shapes (n, 3) and (n,), in the data's units.
    """
    points = _checks.data_matrix("points", points, 3).double()
    half_width = _checks.positive_float("half_width", half_width)
    nearest = torch.cat([_nearest_in_chunk(chunk, half_width) for chunk in points.split(_POINTS_PER_CHUNK)])
    return nearest, (points - nearest).norm(dim=1)


def surface_distance(points: torch.Tensor, *, half_width: float = COSINE_HALF_WIDTH) -> torch.Tensor:
    """The distance from each 3-D point to the noiseless cosine surface (see ``nearest_surface_points``).

    Returns a float64 tensor of shape (n,) in the data's units; exact to 1e-9. Used by the
    comparison chapter (Part III).
    """
    return nearest_surface_points(points, half_width=half_width)[1]


@threads.limited()
def surface_distance_summary(points: torch.Tensor, *, max_points: int | None = None, seed: int = 0,
                             half_width: float = COSINE_HALF_WIDTH) -> dict[str, float]:
    """Mean, median, 90th percentile and maximum of ``surface_distance`` over the points.

    How far generated points stray from the surface they imitate, in the data's units (the data
    themselves, noisy with standard deviation 0.1 per coordinate, have a mean near 0.08). With
    ``max_points`` a seeded random subset of that many points is scored. Used by the comparison
    chapter (Part III).
    """
    points = _subsample(_checks.data_matrix("points", points, 3), max_points, _generator(seed))
    return _summary(surface_distance(points, half_width=half_width))


def _summary(distance: torch.Tensor) -> dict[str, float]:
    return {"mean": distance.mean().item(), "median": distance.median().item(),
            "p90": distance.quantile(0.9).item(), "max": distance.max().item()}


def _nearest_in_chunk(points: torch.Tensor, half_width: float) -> torch.Tensor:
    """Nearest surface points for one chunk of points: 1-D minimisations along candidate segments.

    With rho = |(x, y)| and u = (x, y) / rho, an interior nearest point t * u lies on the line through
    the origin and the point's (x, y) (the gradient of the squared distance vanishes only there), and
    on its ray t >= 0: f(t) - f(-t) = (t - rho)^2 - (t + rho)^2 = -4 t rho <= 0 since cos is even.
    An edge of the square can only do better when the point's (x, y) lies closer to that edge than the
    best distance found on the ray, so the four edges are searched for those points only.
    """
    n, dtype = len(points), points.dtype
    radius = points[:, :2].norm(dim=1, keepdim=True)
    unit = torch.where(radius > 0, points[:, :2] / radius.clamp(min=torch.finfo(dtype).tiny),
                       torch.tensor([1.0, 0.0], dtype=dtype))
    reach = half_width / unit.abs().amax(dim=1, keepdim=True)
    xy, value = _minimise_along_segments(points, torch.zeros(n, 1, 2, dtype=dtype), unit[:, None, :],
                                         torch.zeros_like(reach), reach)
    margin = half_width - points[:, :2].abs().amax(dim=1)
    near_edge = (margin < 0) | (margin.square() < value)
    if near_edge.any():
        m = int(near_edge.sum())
        h = half_width
        origin = torch.tensor([[h, 0.0], [-h, 0.0], [0.0, h], [0.0, -h]], dtype=dtype).expand(m, 4, 2)
        direction = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=dtype).expand(m, 4, 2)
        edge_xy, edge_value = _minimise_along_segments(points[near_edge], origin, direction,
                                                       torch.full((m, 4), -h, dtype=dtype),
                                                       torch.full((m, 4), h, dtype=dtype))
        better = edge_value < value[near_edge]
        xy[near_edge] = torch.where(better[:, None], edge_xy, xy[near_edge])
    return torch.cat([xy, cosine_height(xy)[:, None]], dim=1)


def _minimise_along_segments(points: torch.Tensor, origin: torch.Tensor, direction: torch.Tensor,
                             start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The surface point nearest to each point over segments origin + s * direction, start <= s <= end.

    origin and direction have shape (n, k, 2), start and end (n, k). A grid over each segment finds its local
    minima; the best few are refined by Newton's method (derivatives by central differences),
    safeguarded by the grid bracket so that a step never leaves it. Returns the best (x, y) of shape
    (n, 2) and its squared distance, shape (n,).
    """
    target_xy, target_z = points[:, None, None, :2], points[:, None, None, 2]

    def squared_distance(s: torch.Tensor) -> torch.Tensor:
        xy = origin[:, :, None, :] + s[..., None] * direction[:, :, None, :]
        return ((xy - target_xy) ** 2).sum(-1) + (cosine_height(xy) - target_z) ** 2

    grid_points = math.ceil((end - start).max().item() / _GRID_SPACING) + 1
    step = (end - start) / (grid_points - 1)
    grid = start[..., None] + step[..., None] * torch.arange(grid_points, dtype=points.dtype)
    values = squared_distance(grid)
    is_minimum = torch.ones_like(values, dtype=torch.bool)
    is_minimum[..., 1:] &= values[..., 1:] < values[..., :-1]
    is_minimum[..., :-1] &= values[..., :-1] <= values[..., 1:]
    grid_values, index = torch.where(is_minimum, values, math.inf).topk(_MINIMA_REFINED, dim=-1, largest=False)
    grid_s = grid.gather(-1, index)
    low = start[..., None] + step[..., None] * (index - 1).clamp(min=0)
    high = start[..., None] + step[..., None] * (index + 1).clamp(max=grid_points - 1)
    refined_s = _safeguarded_newton(squared_distance, grid_s, low, high)
    refined_values = squared_distance(refined_s)
    use_refined = refined_values <= grid_values
    s = torch.where(use_refined, refined_s, grid_s).flatten(1)
    values = torch.where(use_refined, refined_values, grid_values).flatten(1)
    winner = values.argmin(dim=1)
    segment = winner // _MINIMA_REFINED
    rows = torch.arange(len(points))
    xy = origin[rows, segment] + s[rows, winner, None] * direction[rows, segment]
    return xy, values[rows, winner]


def _safeguarded_newton(function: Callable[[torch.Tensor], torch.Tensor], s: torch.Tensor,
                        low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Elementwise Newton steps towards a zero of function' in [low, high], bisecting where Newton fails.

    The bracket shrinks with the sign of the derivative at each step, so the iterate never leaves it;
    a minimum at a bracket end is reached exactly.
    """
    e = _DIFFERENCE_STEP
    for _ in range(_NEWTON_STEPS):
        below, centre, above = function(torch.stack([s - e, s, s + e])).unbind(0)
        slope, curvature = (above - below) / (2 * e), (above - 2 * centre + below) / e**2
        low = torch.where(slope < 0, s, low)
        high = torch.where(slope > 0, s, high)
        newton = s - slope / curvature
        usable = (curvature > 0) & (newton >= low) & (newton <= high)
        s = torch.where(usable, newton, (low + high) / 2)
    return s


# --- coverage of the cosine surface -----------------------------------------------------------

@threads.limited()
def coverage_distance(samples: torch.Tensor, *, n_reference: int = DEFAULT_REFERENCE_POINTS,
                      reference_seed: int = 0, max_points: int | None = None, seed: int = 0,
                      half_width: float = COSINE_HALF_WIDTH, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """Mean distance from points spread over the cosine surface to their nearest sample.

    The reference points are ``n_reference`` noiseless points of ``vaelib.data.cosine_surface`` with
    seed ``reference_seed``: (x, y) uniform on the square (the data's own law), z on the surface. The
    value is the mean over them of the Euclidean distance to the nearest sample, in the data's units.
    A model that reaches the whole surface scores low; one that misses a region scores high even when
    every sample lies on the surface. It falls as the number of samples grows, so compare models at
    the same count: ``max_points`` scores a seeded random subset of that many samples (fewer samples
    are used as they are). Used by the comparison chapter (Part III).
    """
    samples = _subsample(_checks.data_matrix("samples", samples, 3), max_points, _generator(seed)).double()
    _checks.positive_int("n_reference", n_reference)
    _checks.seed("reference_seed", reference_seed)
    _checks.positive_int("chunk_size", chunk_size)
    reference = cosine_surface(n_reference, noise=0.0, seed=reference_seed, half_width=half_width).double()
    center = reference.mean(dim=0)
    samples, reference = samples - center, reference - center
    nearest = [_nearest_squared_distance(rows, samples, chunk_size).sqrt() for rows in reference.split(chunk_size)]
    return torch.cat(nearest).mean().item()


@threads.limited()
def cell_coverage(samples: torch.Tensor, *, cells_per_side: int = DEFAULT_CELLS_PER_SIDE,
                  within: float = DEFAULT_WITHIN, max_points: int | None = None, seed: int = 0,
                  half_width: float = COSINE_HALF_WIDTH) -> float:
    """The fraction of surface cells that receive at least one sample lying near the surface.

    The (x, y) square is cut into ``cells_per_side`` x ``cells_per_side`` equal cells (20 x 20 by
    default). A sample lands in the cell of its nearest surface point (``nearest_surface_points``) and
    counts only if its distance to the surface is at most ``within`` (default 0.3, three standard
    deviations of the data's noise, which a data point exceeds with probability about 0.3%). The
    value, in [0, 1], is the fraction of cells that hold a counted sample: 1 when the samples reach the
    whole surface. Like ``coverage_distance`` it depends on the number of samples (``max_points``
    scores a seeded random subset). Used by the comparison chapter (Part III).
    """
    samples = _subsample(_checks.data_matrix("samples", samples, 3), max_points, _generator(seed))
    nearest, distance = nearest_surface_points(samples, half_width=half_width)
    return _occupied_fraction(nearest, distance, cells_per_side, within, half_width)


def _occupied_fraction(nearest: torch.Tensor, distance: torch.Tensor, cells_per_side: int, within: float,
                       half_width: float) -> float:
    """``cell_coverage`` from the samples' nearest surface points and distances."""
    _checks.positive_int("cells_per_side", cells_per_side)
    within = _checks.positive_float("within", within)
    near = nearest[distance <= within, :2]
    cell = ((near + half_width) / (2 * half_width) * cells_per_side).floor().long().clamp(0, cells_per_side - 1)
    occupied = torch.unique(cell[:, 0] * cells_per_side + cell[:, 1])
    return len(occupied) / cells_per_side**2


# --- two-sample distances, any data ------------------------------------------------------------

@threads.limited()
def median_bandwidth(x: torch.Tensor, y: torch.Tensor | None = None, *, max_points: int = MEDIAN_MAX_POINTS,
                     seed: int = 0) -> float:
    """The median heuristic: the median Euclidean distance between distinct points of x (and y, pooled).

    The bandwidth rule of ``mmd2`` (Gretton et al., 2012). It is computed on a seeded random subset
    of at most ``max_points`` pooled points (1,000 by default: ~500,000 pairs), in the data's units.
    To score many models against the same data with one kernel, compute it once from the data alone,
    ``median_bandwidth(data)``, and pass it to ``mmd2``. Used by the comparison chapter (Part III).
    """
    pooled = _checks.data_matrix("x", x)
    if y is not None:
        pooled = torch.cat([pooled, _same_width("y", y, pooled)])
    _checks.positive_int("max_points", max_points)
    pooled = _subsample(pooled, max_points, _generator(seed)).double()
    if len(pooled) < 2:
        raise ValueError("median_bandwidth needs at least 2 points in all, got 1")
    median = torch.pdist(pooled).median().item()
    if median == 0:
        raise ValueError("median_bandwidth: at least half of the pairs of points coincide, so the median "
                         "distance is 0; pass a positive bandwidth to mmd2 yourself")
    return median


@threads.limited()
def mmd2(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float | None = None, max_points: int | None = None,
         seed: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """The unbiased squared maximum mean discrepancy between the samples x and y (any dimension).

    MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j) with the
    Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 l^2)) (Gretton et al., 2012). It is dimensionless,
    0 in expectation when x and y come from the same distribution (so it can be slightly negative),
    and positive otherwise. The bandwidth l is ``bandwidth`` or, when None, ``median_bandwidth(x, y)``
    on the pooled sample; pass a fixed bandwidth to compare several models on one scale. With
    ``max_points`` each sample is replaced by a seeded random subset of that size. Computed in float64,
    ``chunk_size`` x ``chunk_size`` pairs at a time. Its noise level is ``noise_level(mmd2, ...)``.
    Used by the comparison chapter (Part III).
    """
    x, y = _two_samples(x, y, max_points, seed, chunk_size)
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y, seed=seed)
    scale = -0.5 / _checks.positive_float("bandwidth", bandwidth) ** 2
    xx, yy, xy = _pair_means(x, y, chunk_size, kernel_scale=scale)["kernel"]
    return xx + yy - 2 * xy


@threads.limited()
def energy_distance(x: torch.Tensor, y: torch.Tensor, *, max_points: int | None = None, seed: int = 0,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """The unbiased energy distance between the samples x and y (any dimension).

    E = 2 mean_{i, j} ||x_i - y_j|| - mean_{i != j} ||x_i - x_j|| - mean_{i != j} ||y_i - y_j||
    (Szekely & Rizzo), a U-statistic in the data's units: 0 in expectation when x and y come from the
    same distribution, positive otherwise, and free of any bandwidth. ``max_points``, ``seed`` and
    ``chunk_size`` act as in ``mmd2``. Its noise level is ``noise_level(energy_distance, ...)``. Used by
    the comparison chapter (Part III).
    """
    x, y = _two_samples(x, y, max_points, seed, chunk_size)
    xx, yy, xy = _pair_means(x, y, chunk_size, distances=True)["distance"]
    return 2 * xy - xx - yy


@dataclass(frozen=True)
class NoiseLevel:
    """A metric evaluated on independent fresh draws of the data: its values, their mean and std."""

    values: tuple[float, ...]
    mean: float
    std: float


def noise_level(metric: Callable[..., float], source: Callable[..., torch.Tensor] | torch.Tensor,
                n: int, *, draws: int = 2, repeats: int = 5, seed: int = 0) -> NoiseLevel:
    """A metric between independent fresh draws of the data: the level at which a difference is noise.

    Each of ``repeats`` evaluations calls ``metric(*samples)`` on ``draws`` independent samples of n
    points (two for ``mmd2`` and ``energy_distance``; one for the surface metrics, which then gives
    the data's own score). ``source`` is either a sampler called as ``source(n, seed=s)`` with
    s = seed, seed + 1, ... (``vaelib.data.cosine_surface`` is one; keep these seeds away from the
    seed of the data a model was trained on), or a tensor of at least draws * n rows, split into
    disjoint seeded random subsets for each repeat. Pass the same n and settings the models are
    scored with: a model's value within about two ``std`` of ``mean`` is indistinguishable from the
    data. Used by the comparison chapter (Part III).
    """
    _checks.positive_int("n", n)
    _checks.positive_int("draws", draws)
    _checks.positive_int("repeats", repeats)
    _checks.seed("seed", seed)
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 to estimate a spread, got {repeats}")
    if isinstance(source, torch.Tensor):
        pool = _checks.data_matrix("source", source)
        if len(pool) < draws * n:
            raise ValueError(f"source holds {len(pool)} rows but {draws} disjoint draws of n = {n} need "
                             f"{draws * n}; lower n or pass a sampler source(n, seed=...)")
        generator = _generator(seed)
        samples = [pool[torch.randperm(len(pool), generator=generator)[:draws * n]].split(n)
                   for _ in range(repeats)]
    elif callable(source):
        samples = [[source(n, seed=seed + draws * r + i) for i in range(draws)] for r in range(repeats)]
    else:
        raise TypeError(f"source must be a sampler source(n, seed=...) or a torch.Tensor, got "
                        f"{type(source).__name__}")
    values = torch.tensor([float(metric(*draw)) for draw in samples], dtype=torch.float64)
    return NoiseLevel(tuple(values.tolist()), values.mean().item(), values.std().item())


# --- everything at once, for the cosine data ----------------------------------------------------

@threads.limited()
def cosine_sample_quality(samples: torch.Tensor, data: torch.Tensor, *, max_points: int | None = None,
                          seed: int = 0, bandwidth: float | None = None,
                          half_width: float = COSINE_HALF_WIDTH) -> dict[str, float]:
    """Every sample-quality metric of 3-D samples of the cosine surface against fresh data.

    Keys: ``surface_distance`` (mean) and ``surface_distance_p90`` (``surface_distance_summary``),
    ``coverage_distance``, ``cell_coverage`` (defaults of those functions), ``mmd2`` and ``energy``
    against ``data`` (fresh data, not the training set). The kernel's bandwidth is ``bandwidth`` or,
    when None, ``median_bandwidth(data)``: the data's own, so that every model scored against the same
    data shares one kernel; computing it once and passing it saves its cost on every call. ``max_points``
    (with ``seed``) subsamples samples and data once, for every metric: to score many models, use one
    subsample size for all (coverage depends on the count) and take the noise level at that size,
    ``noise_level(..., n=max_points)``. Used by the comparison chapter (Part III).
    """
    generator = _generator(seed)
    samples = _subsample(_checks.data_matrix("samples", samples, 3), max_points, generator)
    data = _subsample(_checks.data_matrix("data", data, 3), max_points, generator)
    if bandwidth is None:
        bandwidth = median_bandwidth(data, seed=seed)
    scale = -0.5 / _checks.positive_float("bandwidth", bandwidth) ** 2
    nearest, distance = nearest_surface_points(samples, half_width=half_width)
    surface = _summary(distance)
    x, y = _two_samples(samples, data, None, seed, DEFAULT_CHUNK_SIZE)
    means = _pair_means(x, y, DEFAULT_CHUNK_SIZE, kernel_scale=scale, distances=True)
    (kxx, kyy, kxy), (dxx, dyy, dxy) = means["kernel"], means["distance"]
    return {"surface_distance": surface["mean"], "surface_distance_p90": surface["p90"],
            "coverage_distance": coverage_distance(samples, half_width=half_width),
            "cell_coverage": _occupied_fraction(nearest, distance, DEFAULT_CELLS_PER_SIDE, DEFAULT_WITHIN,
                                                half_width),
            "mmd2": kxx + kyy - 2 * kxy, "energy": 2 * dxy - dxx - dyy}


# --- how well a VAE fits the data ---------------------------------------------------------------

@torch.no_grad()
@threads.limited()
def reconstruction_and_kl(model, x: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
    """A trained VAE's fit to the data x: the reconstruction error two ways, and the KL.

    * ``recon_sampled``: (1/n)·||X - decode(z)||_F^2 with z = mu + sigma·eps, one draw per point
      (eps from a generator seeded with ``seed``): the Monte Carlo estimate of E_q[||x - x~||^2]
      that training minimises, which includes what the posterior's spread costs;
    * ``recon_mean``: the same at z = mu, the posterior mean: the error of the encoder and
      decoder as a deterministic autoencoder, which ignores the spread;
    * ``kl``: KL(q(z|x) || N(0, I)) averaged over the points, in nats, computed in float64 from the
      encoder's mu and log-variance (a float32 KL loses percents when it is near 0).

    The two errors differ by what sampling the code costs: nearly nothing for a model whose
    posterior is tight, a lot for one whose posterior is wide. Squared errors are summed in float64.
    Used by the reproduction (Part IV) and the comparison chapter (Part III).
    """
    x = _checks.data_matrix("x", x)
    was_training = model.training
    model.eval()
    try:
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=_generator(seed), dtype=mu.dtype).to(mu.device)
        sampled = model.decode(mu + torch.exp(0.5 * logvar) * eps)
        at_mean = model.decode(mu)
    finally:
        model.train(was_training)
    kl = gaussian_kl(mu.double(), logvar.double())
    x64 = x.double()
    return {"recon_sampled": (x64 - sampled.double()).pow(2).sum(dim=1).mean().item(),
            "recon_mean": (x64 - at_mean.double()).pow(2).sum(dim=1).mean().item(),
            "kl": kl.mean().item()}


# --- summaries over runs ----------------------------------------------------------------------

def mean_std(values) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value) of a metric over runs.
    Used by Table 1 (Part IV), the comparison (Part III) and ``vaelib.sweep``'s summaries."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "std": None}
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))}


# --- helpers ------------------------------------------------------------------------------------

def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_checks.seed("seed", seed))


def _subsample(x: torch.Tensor, max_points: int | None, generator: torch.Generator) -> torch.Tensor:
    """A random subset of max_points rows drawn with ``generator`` (all rows when there are no more)."""
    if max_points is None:
        return x
    _checks.positive_int("max_points", max_points)
    if len(x) <= max_points:
        return x
    return x[torch.randperm(len(x), generator=generator)[:max_points]]


def _same_width(name: str, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = _checks.data_matrix(name, y)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"x and {name} must have the same number of features, got {x.shape[1]} and "
                         f"{y.shape[1]} (shapes {tuple(x.shape)} and {tuple(y.shape)})")
    return y


def _two_samples(x, y, max_points: int | None, seed: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated, subsampled float64 copies of x and y, centred on their pooled mean."""
    x = _checks.data_matrix("x", x)
    y = _same_width("y", y, x)
    _checks.positive_int("chunk_size", chunk_size)
    if max_points is not None and _checks.positive_int("max_points", max_points) < 2:
        raise ValueError(f"max_points must be at least 2 for a two-sample distance, got {max_points}")
    generator = _generator(seed)
    x, y = _subsample(x, max_points, generator).double(), _subsample(y, max_points, generator).double()
    for name, sample in (("x", x), ("y", y)):
        if len(sample) < 2:
            raise ValueError(f"{name} needs at least 2 points for an unbiased two-sample distance, got "
                             f"{len(sample)}")
    center = torch.cat([x, y]).mean(dim=0)
    return x - center, y - center


def _nearest_squared_distance(a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The squared distance from each row of a to its nearest row of b, b taken chunk_size rows at a time."""
    a_augmented = _augmented(a)
    nearest = torch.full((len(a),), math.inf, dtype=a.dtype)
    for block in b.split(chunk_size):
        nearest = torch.minimum(nearest, (a_augmented @ _augmented(block, right=True).T).amin(dim=1))
    return nearest.clamp_min_(0)


def _augmented(a: torch.Tensor, right: bool = False) -> torch.Tensor:
    """Rows [-2 a_i, |a_i|^2, 1] (left) or [b_j, 1, |b_j|^2] (right): their products are ||a_i - b_j||^2,
    so that one matrix product gives a whole block of squared distances."""
    norms, ones = (a * a).sum(1, keepdim=True), torch.ones(len(a), 1, dtype=a.dtype)
    return torch.cat([a, ones, norms] if right else [-2 * a, norms, ones], dim=1)


def _pair_means(x: torch.Tensor, y: torch.Tensor, chunk_size: int, *, kernel_scale: float | None = None,
                distances: bool = False) -> dict[str, tuple[float, float, float]]:
    """Means of exp(kernel_scale ||a - b||^2) (key "kernel") and of ||a - b|| (key "distance") over the
    pairs (x_i, x_j) with i != j, (y_i, y_j) with i != j, and (x_i, y_j): a tuple (xx, yy, xy) per key."""
    m, n = len(x), len(y)
    sums = [_pair_sums(x, x, chunk_size, kernel_scale, distances, same=True),
            _pair_sums(y, y, chunk_size, kernel_scale, distances, same=True),
            _pair_sums(x, y, chunk_size, kernel_scale, distances, same=False)]
    pairs = (m * (m - 1), n * (n - 1), m * n)
    names = (["kernel"] if kernel_scale is not None else []) + (["distance"] if distances else [])
    return {name: tuple(total[k] / count for total, count in zip(sums, pairs)) for k, name in enumerate(names)}


def _pair_sums(a: torch.Tensor, b: torch.Tensor, chunk_size: int, kernel_scale: float | None, distances: bool,
               same: bool) -> list[float]:
    """Float64 sums over all pairs (or over i != j when a is b) of the kernel and/or the distance.

    a and b are taken chunk_size rows at a time (blocks of chunk_size^2 pairs, 2 MiB at the default
    512); when a is b only the blocks on and above the diagonal are computed, those above counted twice.
    """
    a_augmented, b_augmented = _augmented(a), _augmented(b, right=True)
    kernel_sum = torch.zeros((), dtype=torch.float64)
    distance_sum = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(a), chunk_size):
        rows = a_augmented[start:start + chunk_size]
        for other in range(start if same else 0, len(b), chunk_size):
            squared = rows @ b_augmented[other:other + chunk_size].T
            diagonal_block = same and other == start
            weight = 2.0 if same and not diagonal_block else 1.0
            if distances:
                distance = squared.clamp_min(0).sqrt_()
                if diagonal_block:
                    distance.fill_diagonal_(0)
                distance_sum += weight * distance.sum(dtype=torch.float64)
            if kernel_scale is not None:
                kernel = squared.mul_(kernel_scale).exp_()
                if diagonal_block:
                    kernel.fill_diagonal_(0)
                kernel_sum += weight * kernel.sum(dtype=torch.float64)
    return [total.item() for total, wanted in ((kernel_sum, kernel_scale is not None), (distance_sum, distances))
            if wanted]
