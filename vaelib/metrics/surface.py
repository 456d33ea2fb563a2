"""The geometry of the cosine surface of ``vaelib.data.cosine_surface``, and how well samples cover it.

* ``nearest_surface_points`` / ``surface_distance``: the true Euclidean distance from each point to
  the nearest point of the noiseless surface; ``surface_distance_summary`` summarises it.
* ``coverage_distance``: the mean distance from surface points spread uniformly over the square to
  their nearest sample (small when the samples reach everywhere).
* ``cell_coverage``: the fraction of a grid of surface cells that receive a sample lying near the surface.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vaelib import _checks, threads
from vaelib.data import COSINE_HALF_WIDTH, COSINE_NOISE, cosine_height, cosine_surface
from vaelib.metrics._pairs import DEFAULT_CHUNK_SIZE, nearest_squared_distance, seeded_generator, subsample

# Surface distance: the spacing of the 1-D grid along each candidate segment, the grid minima refined per
# segment (the radial line has at most three local minima; four leaves a margin), the safeguarded Newton steps that
# refine them (quadratic convergence from a grid step of 0.025 to ~1e-12), and the finite-difference step.
_GRID_SPACING = 0.025
_MINIMA_REFINED = 4
_NEWTON_STEPS = 6
_DIFFERENCE_STEP = 1e-5
SURFACE_DISTANCE_TOLERANCE = 1e-9
_POINTS_PER_CHUNK = 2048

DEFAULT_CELLS_PER_SIDE = 20
DEFAULT_WITHIN = 3 * COSINE_NOISE
DEFAULT_REFERENCE_POINTS = 2000


# The surface's distances are searched on a grid along each point's ray: beyond this, squared
# distances overflow float64. A sample of the surface lies within a few units of the origin.
MAX_COORDINATE = 1e100


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
    largest = points.abs().max().item()
    if largest > MAX_COORDINATE or half_width > MAX_COORDINATE:
        raise ValueError(f"points and half_width must lie within {MAX_COORDINATE:g} of the origin (a sample of the "
                         f"cosine surface lies within a few units of it), got a coordinate of {max(largest, half_width):g}"
                         "; rescale the points")
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
    points = subsample(_checks.data_matrix("points", points, 3), max_points, seeded_generator(seed))
    return distance_summary(surface_distance(points, half_width=half_width))


def distance_summary(distance: torch.Tensor) -> dict[str, float]:
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
    samples = subsample(_checks.data_matrix("samples", samples, 3), max_points, seeded_generator(seed)).double()
    _checks.positive_int("n_reference", n_reference)
    _checks.seed("reference_seed", reference_seed)
    _checks.positive_int("chunk_size", chunk_size)
    reference = cosine_surface(n_reference, noise=0.0, seed=reference_seed, half_width=half_width).double()
    center = reference.mean(dim=0)
    samples, reference = samples - center, reference - center
    nearest = [nearest_squared_distance(rows, samples, chunk_size).sqrt() for rows in reference.split(chunk_size)]
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
    samples = subsample(_checks.data_matrix("samples", samples, 3), max_points, seeded_generator(seed))
    nearest, distance = nearest_surface_points(samples, half_width=half_width)
    return occupied_fraction(nearest, distance, cells_per_side, within, half_width)


def occupied_fraction(nearest: torch.Tensor, distance: torch.Tensor, cells_per_side: int, within: float,
                       half_width: float) -> float:
    """``cell_coverage`` from the samples' nearest surface points and distances."""
    _checks.positive_int("cells_per_side", cells_per_side)
    within = _checks.positive_float("within", within)
    near = nearest[distance <= within, :2]
    cell = ((near + half_width) / (2 * half_width) * cells_per_side).floor().long().clamp(0, cells_per_side - 1)
    occupied = torch.unique(cell[:, 0] * cells_per_side + cell[:, 1])
    return len(occupied) / cells_per_side**2
