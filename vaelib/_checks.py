"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError``) with a message that names the argument, the value
that was seen and what is expected, so that a wrong call is fixed from the message alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def non_negative_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {float(value)}")
    return float(value)


def one_of(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def model_input(name: str, x, features: int | None = None) -> torch.Tensor:
    """A dense (not sparse), non-meta, floating-point (n, d) tensor with n, d >= 1, optionally with
    d == features: what a model's forward pass checks. Only shapes and types, never values: it costs no synchronisation and works
    inside ``torch.func`` transforms; trainers check that the data are finite once, up front."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}; "
                        "convert with torch.as_tensor(x, dtype=torch.float32)")
    if x.layout != torch.strided:
        raise TypeError(f"{name} is a {str(x.layout).removeprefix('torch.')} tensor; vaelib takes dense tensors: "
                        "convert with x.to_dense()")
    if x.is_meta:
        raise ValueError(f"{name} is on the meta device (a shape without values); pass a tensor that holds "
                         "data, e.g. on the CPU")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(x.shape)}; "
                         "flatten images with x.reshape(len(x), -1)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; use x.float()")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}; it needs at least one row")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {tuple(x.shape)}; each row needs at least one value")
    if features is not None and x.shape[1] != features:
        raise ValueError(f"{name} must have {features} features per row, got {x.shape[1]} "
                         f"(shape {tuple(x.shape)})")
    return x


def inside_transform(t: torch.Tensor) -> bool:
    """Whether ``t`` is traced by a ``torch.func`` transform (``fit_batched``'s vmap), where its
    values cannot be read and random draws are refused: a check on values is then left to the eager
    path (``vaelib.fit``)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def data_matrix(name: str, x, features: int | None = None) -> torch.Tensor:
    """A non-empty, finite, floating-point (n, d) tensor, optionally with d == features."""
    model_input(name, x, features)
    distinct = x  # a broadcast view (stride 0) repeats one row or column: checking it once is enough
    for dim in range(x.dim()):
        if x.stride(dim) == 0:
            distinct = distinct.narrow(dim, 0, 1)
    if not torch.isfinite(distinct).all():
        bad = int((~torch.isfinite(distinct)).any(dim=1).sum()) * (len(x) if len(distinct) < len(x) else 1)
        raise ValueError(f"{name} holds non-finite values (NaN or inf) in {bad} of {x.shape[0]} rows; "
                         "drop or impute them first")
    return x


def finite_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def seed(name: str, value) -> int:
    """A seed that every torch generator accepts: an int in [0, 2**63)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63), got {value}")
    return value


def positive_int_sequence(name: str, value) -> tuple[int, ...]:
    """A list or tuple of positive ints (layer sizes), possibly empty."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list or tuple of positive ints, got {type(value).__name__} "
                        f"({value!r}); write a single size as ({value!r},)")
    for i, item in enumerate(value):
        positive_int(f"{name}[{i}]", item)
    return tuple(value)
