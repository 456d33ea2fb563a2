"""Sample quality as the book reports it: every metric at once for samples of the cosine surface
(``cosine_sample_quality``), and the level below which a difference in any metric is noise
(``noise_level``: the metric between independent fresh draws of the data).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaelib import _checks, threads
from vaelib.data import COSINE_HALF_WIDTH
from vaelib.metrics._pairs import (DEFAULT_CHUNK_SIZE, ReferenceSums, finite_result, kernel_scale, pair_means,
                                   seeded_generator, subsample, two_samples)
from vaelib.metrics.surface import (DEFAULT_CELLS_PER_SIDE, DEFAULT_WITHIN, coverage_distance, distance_summary,
                                    nearest_surface_points, occupied_fraction)
from vaelib.metrics.two_sample import median_bandwidth

# Which way each metric of ``cosine_sample_quality`` improves, for a table's ranking
# (``vaelib.tables.Column``). The distances to the surface can fall below fresh data's, since a decoder
# outputs its mean without the noise: lower is better only beside the coverage and two-sample metrics.
BETTER = {"surface_distance": "lower", "surface_distance_p90": "lower", "coverage_distance": "lower",
          "cell_coverage": "higher", "mmd2": "lower", "energy": "lower"}


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
        generator = seeded_generator(seed)
        samples = [pool[torch.randperm(len(pool), generator=generator)[:draws * n]].split(n)
                   for _ in range(repeats)]
    elif callable(source):
        samples = [[source(n, seed=seed + draws * r + i) for i in range(draws)] for r in range(repeats)]
    else:
        raise TypeError(f"source must be a sampler source(n, seed=...) or a torch.Tensor, got "
                        f"{type(source).__name__}")
    values = torch.tensor([float(metric(*draw)) for draw in samples], dtype=torch.float64)
    return NoiseLevel(tuple(values.tolist()), values.mean().item(), values.std().item())


@threads.limited()
def cosine_sample_quality(samples: torch.Tensor, data: torch.Tensor, *, max_points: int | None = None,
                          seed: int = 0, bandwidth: float | None = None, half_width: float = COSINE_HALF_WIDTH,
                          reference_sums: ReferenceSums | None = None) -> dict[str, float]:
    """Every sample-quality metric of 3-D samples of the cosine surface against fresh data.

    Keys: ``surface_distance`` (mean) and ``surface_distance_p90`` (``surface_distance_summary``),
    ``coverage_distance``, ``cell_coverage`` (defaults of those functions), ``mmd2`` and ``energy``
    against ``data`` (fresh data, not the training set). The kernel's bandwidth is ``bandwidth`` or,
    when None, ``median_bandwidth(data)``: the data's own, so that every model scored against the same
    data shares one kernel; computing it once and passing it saves its cost on every call. ``max_points``
    (with ``seed``) subsamples samples and data once, for every metric: to score many models, use one
    subsample size for all (coverage depends on the count) and take the noise level at that size,
    ``noise_level(..., n=max_points)``. To score many clouds against the same data, pass one
    ``ReferenceSums()`` to every call: the data's own pair sums (a quarter of the two-sample work)
    are then computed once. Used by the comparison chapter (Part III).
    """
    generator = seeded_generator(seed)
    samples = subsample(_checks.data_matrix("samples", samples, 3), max_points, generator)
    data = subsample(_checks.data_matrix("data", data, 3), max_points, generator)
    if bandwidth is None:
        bandwidth = median_bandwidth(data, seed=seed)
    _checks.positive_float("bandwidth", bandwidth)
    nearest, distance = nearest_surface_points(samples, half_width=half_width)
    surface = distance_summary(distance)
    x, y, scale = two_samples(samples, data, None, seed, DEFAULT_CHUNK_SIZE)
    means = pair_means(x, y, DEFAULT_CHUNK_SIZE, kernel_scale=kernel_scale(bandwidth, scale), distances=True,
                       reference=reference_sums)
    (kxx, kyy, kxy), (dxx, dyy, dxy) = means["kernel"], means["distance"]
    values = {"surface_distance": surface["mean"], "surface_distance_p90": surface["p90"],
              "coverage_distance": coverage_distance(samples, half_width=half_width),
              "cell_coverage": occupied_fraction(nearest, distance, DEFAULT_CELLS_PER_SIDE, DEFAULT_WITHIN,
                                                  half_width),
              "mmd2": kxx + kyy - 2 * kxy, "energy": (2 * dxy - dxx - dyy) * scale}
    return {name: finite_result(name, value) for name, value in values.items()}
