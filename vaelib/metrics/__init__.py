"""Measured sample quality of a generative model: how close its samples come to the data, how much of
the data they reach, and how far their distribution is from the data's.

Used by the comparison chapter (Part III), which scores every trained model with these numbers
instead of judging its sample cloud by eye. One concern per module:

* ``surface``, for data with a known generating surface (the cosine surface of
  ``vaelib.data.cosine_surface``): ``nearest_surface_points`` / ``surface_distance`` (the true
  Euclidean distance from each point to the noiseless surface), ``surface_distance_summary``,
  ``coverage_distance`` (the mean distance from surface points spread uniformly over the square to
  their nearest sample) and ``cell_coverage`` (the fraction of a grid of surface cells that receive
  a sample lying near the surface);
* ``two_sample``, for any data of any dimension: ``mmd2`` (the unbiased squared maximum mean
  discrepancy with a Gaussian kernel; ``median_bandwidth`` is its bandwidth rule) and
  ``energy_distance`` (the unbiased energy distance);
* ``quality``: ``cosine_sample_quality`` (every metric above at once for samples of the cosine
  surface; ``BETTER`` says which way each improves) and ``noise_level`` (a metric between independent fresh draws of the data: the level
  below which a difference between two models is noise);
* ``_pairs``: the seeded subsets and blockwise sums over pairs of points they share, and
  ``ReferenceSums``, which keeps one sample's own pair sums for the calls that score many samples
  against it.

A generator that puts every point on one spot of the surface has surface distance 0; only the
coverage and two-sample metrics expose it, which is why they come together. All distances are in
the data's own units; all computations run in float64; every random choice takes a seed; PyTorch
runs on ``vaelib.threads.torch_threads()`` threads inside each function.

Kept importable from here: ``reconstruction_and_kl`` (a VAE's fit to its data, defined in
``vaelib.evaluation``) and ``mean_std`` (a quantity's mean and spread over runs, in ``vaelib.claims``).
"""
from __future__ import annotations

from vaelib.claims import mean_std
from vaelib.evaluation import reconstruction_and_kl
from vaelib.metrics._pairs import DEFAULT_CHUNK_SIZE, ReferenceSums
from vaelib.metrics.quality import BETTER, NoiseLevel, cosine_sample_quality, noise_level
from vaelib.metrics.surface import (DEFAULT_CELLS_PER_SIDE, DEFAULT_REFERENCE_POINTS, DEFAULT_WITHIN,
                                    SURFACE_DISTANCE_TOLERANCE, cell_coverage, coverage_distance,
                                    nearest_surface_points, surface_distance, surface_distance_summary)
from vaelib.metrics.two_sample import MEDIAN_MAX_POINTS, energy_distance, median_bandwidth, mmd2

__all__ = ["BETTER", "DEFAULT_CELLS_PER_SIDE", "DEFAULT_CHUNK_SIZE", "DEFAULT_REFERENCE_POINTS", "DEFAULT_WITHIN",
           "MEDIAN_MAX_POINTS", "SURFACE_DISTANCE_TOLERANCE", "NoiseLevel", "ReferenceSums", "cell_coverage", "cosine_sample_quality",
           "coverage_distance", "energy_distance", "mean_std", "median_bandwidth", "mmd2", "nearest_surface_points",
           "noise_level", "reconstruction_and_kl", "surface_distance", "surface_distance_summary"]
