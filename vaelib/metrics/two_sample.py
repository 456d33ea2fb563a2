"""Two-sample distances between point clouds of any dimension: how far a model's samples are, in
distribution, from the data.

* ``mmd2``: the unbiased squared maximum mean discrepancy with a Gaussian kernel;
  ``median_bandwidth`` is its bandwidth rule.
* ``energy_distance``: the unbiased energy distance.
"""
from __future__ import annotations

import torch

from vaelib import _checks, threads
from vaelib.metrics._pairs import (DEFAULT_CHUNK_SIZE, ReferenceSums, finite_result, kernel_scale, pair_means,
                                   power_of_two_scale, same_width, seeded_generator, subsample, two_samples)

MEDIAN_MAX_POINTS = 1000


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
        pooled = torch.cat([pooled, same_width("y", y, pooled)])
    _checks.positive_int("max_points", max_points)
    pooled = subsample(pooled, max_points, seeded_generator(seed)).double()
    if len(pooled) < 2:
        raise ValueError("median_bandwidth needs at least 2 points in all, got 1")
    scale = power_of_two_scale(pooled.abs().max().item())  # exact, so that squared distances cannot overflow
    median = torch.pdist(pooled / scale).median().item() * scale
    if median == 0:
        raise ValueError("median_bandwidth: at least half of the pairs of points coincide, so the median "
                         "distance is 0; pass a positive bandwidth to mmd2 yourself")
    return median


@threads.limited()
def mmd2(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float | None = None, max_points: int | None = None,
         seed: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE, reference_sums: ReferenceSums | None = None) -> float:
    """The unbiased squared maximum mean discrepancy between the samples x and y (any dimension).

    MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j) with the
    Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 l^2)) (Gretton et al., 2012). It is dimensionless,
    0 in expectation when x and y come from the same distribution (so it can be slightly negative),
    and positive otherwise. The bandwidth l is ``bandwidth`` or, when None, ``median_bandwidth(x, y)``
    on the pooled sample; pass a fixed bandwidth to compare several models on one scale. With
    ``max_points`` each sample is replaced by a seeded random subset of that size. Computed in float64,
    ``chunk_size`` x ``chunk_size`` pairs at a time. Its noise level is ``noise_level(mmd2, ...)``.
    Scoring many x against one y, pass one ``ReferenceSums()`` to every call: y's own pair sums are
    computed once. Used by the comparison chapter (Part III).
    """
    if bandwidth is not None:
        _checks.positive_float("bandwidth", bandwidth)
    x, y, scale = two_samples(x, y, max_points, seed, chunk_size)
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y, seed=seed) * scale
    xx, yy, xy = pair_means(x, y, chunk_size, kernel_scale=kernel_scale(bandwidth, scale),
                            reference=reference_sums)["kernel"]
    return finite_result("mmd2", xx + yy - 2 * xy)


@threads.limited()
def energy_distance(x: torch.Tensor, y: torch.Tensor, *, max_points: int | None = None, seed: int = 0,
                    chunk_size: int = DEFAULT_CHUNK_SIZE, reference_sums: ReferenceSums | None = None) -> float:
    """The unbiased energy distance between the samples x and y (any dimension).

    E = 2 mean_{i, j} ||x_i - y_j|| - mean_{i != j} ||x_i - x_j|| - mean_{i != j} ||y_i - y_j||
    (Szekely & Rizzo), a U-statistic in the data's units: 0 in expectation when x and y come from the
    same distribution, positive otherwise, and free of any bandwidth. ``max_points``, ``seed`` and
    ``chunk_size`` and ``reference_sums`` act as in ``mmd2``. Its noise level is ``noise_level(energy_distance, ...)``. Used by
    the comparison chapter (Part III).
    """
    x, y, scale = two_samples(x, y, max_points, seed, chunk_size)
    xx, yy, xy = pair_means(x, y, chunk_size, distances=True, reference=reference_sums)["distance"]
    return finite_result("energy_distance", (2 * xy - xx - yy) * scale)
