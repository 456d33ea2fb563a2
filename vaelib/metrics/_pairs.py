"""The numerical machinery the metrics share: seeded random subsets, and sums over pairs of points
computed a block of pairs at a time in float64 (one matrix product gives a block of squared
distances), so that memory stays bounded whatever the number of points."""
from __future__ import annotations

import math
import threading

import torch

from vaelib import _checks

DEFAULT_CHUNK_SIZE = 512


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_checks.seed("seed", seed))


def subsample(x: torch.Tensor, max_points: int | None, generator: torch.Generator) -> torch.Tensor:
    """A random subset of max_points rows drawn with ``generator`` (all rows when there are no more)."""
    if max_points is None:
        return x
    _checks.positive_int("max_points", max_points)
    if len(x) <= max_points:
        return x
    return x[torch.randperm(len(x), generator=generator)[:max_points]]


def same_width(name: str, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = _checks.data_matrix(name, y)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"x and {name} must have the same number of features, got {x.shape[1]} and "
                         f"{y.shape[1]} (shapes {tuple(x.shape)} and {tuple(y.shape)})")
    return y


# Coordinates whose size lies in this range are used as they are; beyond it, squared distances
# would overflow float64 (above ~1e154) or lose their digits to underflow (below ~1e-154).
SAFE_SCALE = (2.0**-330, 2.0**330)


def two_samples(x: torch.Tensor, y: torch.Tensor, max_points: int | None, seed: int,
                chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Validated, subsampled float64 copies of x and y, divided by ``scale`` (returned third) and
    centred on y's mean. ``scale`` is 1 for coordinates within ``SAFE_SCALE`` (about 1e-99 to 1e99),
    else a power of two near their largest magnitude. Dividing by a power of two is exact, so a
    distance computed from the scaled copies, times ``scale``, is the distance of the originals;
    squared distances then neither overflow nor underflow. Centred on y alone, y's copy (and so its
    own pair sums) is the same whatever x it is compared with: ``ReferenceSums`` reuses them. Raises
    ``ValueError`` when every point of x and y is one and the same point: a distance between
    distributions needs some spread."""
    x = _checks.data_matrix("x", x)
    y = same_width("y", y, x)
    _checks.positive_int("chunk_size", chunk_size)
    if max_points is not None and _checks.positive_int("max_points", max_points) < 2:
        raise ValueError(f"max_points must be at least 2 for a two-sample distance, got {max_points}")
    generator = seeded_generator(seed)
    x, y = subsample(x, max_points, generator).double(), subsample(y, max_points, generator).double()
    for name, sample in (("x", x), ("y", y)):
        if len(sample) < 2:
            raise ValueError(f"{name} needs at least 2 points for an unbiased two-sample distance, got "
                             f"{len(sample)}")
    pooled = torch.cat([x, y])
    largest = pooled.abs().max().item()
    scale = power_of_two_scale(largest)
    x, y = x / scale, y / scale  # exact: a power of two
    center = y.mean(dim=0)
    x, y = x - center, y - center
    if torch.cat([x, y]).abs().max().item() == 0:
        raise ValueError("every point of x and y is the same point: there is no spread to compare "
                         "(the distance would be 0 whatever the distributions); check the samples")
    return x, y, scale


def power_of_two_scale(largest: float) -> float:
    """1 when ``largest`` lies within ``SAFE_SCALE`` (or is 0), else the power of two at or just
    below it (``largest / scale`` lies in [1, 2))."""
    if largest == 0 or SAFE_SCALE[0] <= largest <= SAFE_SCALE[1]:
        return 1.0
    return math.ldexp(1.0, math.frexp(largest)[1] - 1)


def kernel_scale(bandwidth: float, scale: float) -> float:
    """The Gaussian kernel's -1 / (2 l^2) for coordinates divided by ``scale``: -(scale / l)^2 / 2,
    bounded so that it is finite for any positive bandwidth (a bandwidth far below the distances gives
    a kernel of 0 between distinct points, one far above them a kernel of 1)."""
    ratio = min(scale / bandwidth, 1e150)
    return -0.5 * ratio * ratio


def finite_result(name: str, value: float) -> float:
    """``value``, or ``ValueError`` when it is not finite: a metric never returns NaN or inf."""
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value} for these samples: their distances overflow float64 (coordinates "
                         "near 1e308); rescale the data first")
    return value


def nearest_squared_distance(a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The squared distance from each row of a to its nearest row of b, b taken chunk_size rows at a time."""
    a_augmented = augmented(a)
    nearest = torch.full((len(a),), math.inf, dtype=a.dtype)
    for block in b.split(chunk_size):
        nearest = torch.minimum(nearest, (a_augmented @ augmented(block, right=True).T).amin(dim=1))
    return nearest.clamp_min_(0)


def augmented(a: torch.Tensor, right: bool = False) -> torch.Tensor:
    """Rows [-2 a_i, |a_i|^2, 1] (left) or [b_j, 1, |b_j|^2] (right): their products are ||a_i - b_j||^2,
    so that one matrix product gives a whole block of squared distances."""
    norms, ones = (a * a).sum(1, keepdim=True), torch.ones(len(a), 1, dtype=a.dtype)
    return torch.cat([a, ones, norms] if right else [-2 * a, norms, ones], dim=1)


class ReferenceSums:
    """A sample y that many samples x are compared with (fresh data, scored against every model):
    its own pair sums, computed once per (y's copy, scale, kernel) and reused while they match.

    ``pair_means(x, y, ..., reference=...)`` asks it for y's sums. It compares the y it is given
    with the one it holds (an exact comparison of a few thousand numbers, far cheaper than the
    sums), so a changed subsample or scale is computed afresh, never mistaken for the held one.
    It holds one y per kind of sum (chunk size, kernel, distances). Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, float | None, bool], tuple[torch.Tensor, list[float]]] = {}

    def own_sums(self, y: torch.Tensor, chunk_size: int, kernel_scale: float | None, distances: bool) -> list[float]:
        key = (chunk_size, kernel_scale, distances)
        with self._lock:
            held = self._held.get(key)
            if held is not None and held[0].shape == y.shape and torch.equal(held[0], y):
                return held[1]
            sums = pair_sums(y, y, chunk_size, kernel_scale, distances, same=True)
            self._held[key] = (y, sums)
            return sums


def pair_means(x: torch.Tensor, y: torch.Tensor, chunk_size: int, *, kernel_scale: float | None = None,
               distances: bool = False, reference: ReferenceSums | None = None) -> dict[str, tuple[float, float, float]]:
    """Means of exp(kernel_scale ||a - b||^2) (key "kernel") and of ||a - b|| (key "distance") over the
    pairs (x_i, x_j) with i != j, (y_i, y_j) with i != j, and (x_i, y_j): a tuple (xx, yy, xy) per key.
    With ``reference`` y's own sums come from it (computed there once for many x)."""
    m, n = len(x), len(y)
    sums = [pair_sums(x, x, chunk_size, kernel_scale, distances, same=True),
            (reference.own_sums(y, chunk_size, kernel_scale, distances) if reference is not None
             else pair_sums(y, y, chunk_size, kernel_scale, distances, same=True)),
            pair_sums(x, y, chunk_size, kernel_scale, distances, same=False)]
    pairs = (m * (m - 1), n * (n - 1), m * n)
    names = (["kernel"] if kernel_scale is not None else []) + (["distance"] if distances else [])
    return {name: (sums[0][k] / pairs[0], sums[1][k] / pairs[1], sums[2][k] / pairs[2]) for k, name in enumerate(names)}


def pair_sums(a: torch.Tensor, b: torch.Tensor, chunk_size: int, kernel_scale: float | None, distances: bool,
               same: bool) -> list[float]:
    """Float64 sums over all pairs (or over i != j when a is b) of the kernel and/or the distance.

    a and b are taken chunk_size rows at a time (blocks of chunk_size^2 pairs, 2 MiB at the default
    512); when a is b only the blocks on and above the diagonal are computed, those above counted twice.
    """
    a_augmented, b_augmented = augmented(a), augmented(b, right=True)
    kernel_sum = torch.zeros((), dtype=torch.float64)
    distance_sum = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(a), chunk_size):
        rows = a_augmented[start:start + chunk_size]
        for other in range(start if same else 0, len(b), chunk_size):
            squared = (rows @ b_augmented[other:other + chunk_size].T).clamp_min_(0)  # rounding can give < 0
            diagonal_block = same and other == start
            weight = 2.0 if same and not diagonal_block else 1.0
            if distances:
                distance = squared.sqrt()
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
