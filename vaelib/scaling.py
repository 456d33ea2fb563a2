"""Data on a unit scale, and the scaling that travels with a model.

The defaults of vaelib's training (a learning rate of 1e-3, ``ELBO``'s squared error, which is a
Gaussian decoder of variance 1/2, GECO's kappa) suit data whose features have a spread of about 1.
Raw measurements rarely do: the breast-cancer features range from 0.001 to 4000. ``Scaling``
standardises each feature with the mean and standard deviation of the *training* rows, and is kept
in the checkpoint (``save_checkpoint(..., scaling=...)``, ``fit(..., scaling=...)``), so that
samples, codes and scores come back in the data's own units::

    scaling = Scaling.fit(x_train)
    fit(model, objective, scaling.apply(x_train), checkpoint="run.ckpt", scaling=scaling)
    samples = scaling.invert(model.sample(100))          # in the data's units

``scale_problem(x)`` says, in one sentence, when a data set is far enough from unit scale that
the defaults are unsuitable (``python -m vaelib train`` warns with it, as a ``DataScaleWarning``),
and None otherwise.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from vaelib.warning_types import DataScaleWarning

# Columns are "far from unit scale" when a standard deviation or a mean's size exceeds SCALE_LIMIT,
# when every standard deviation is below 1 / SCALE_LIMIT, or when the largest standard deviation
# exceeds the median one by more than SPREAD_LIMIT (a factor; the median, not the smallest, so that
# the near-constant border pixels of an image do not count).
SCALE_LIMIT = 10.0
SPREAD_LIMIT = 100.0


@dataclass(frozen=True)
class Scaling:
    """Per-feature standardisation x -> (x - mean) / scale, fitted on training rows.

    ``mean`` and ``scale`` are tuples of floats, one per feature; a constant feature gets scale 1
    (it is only centred)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.scale) or not self.mean:
            raise ValueError(f"a Scaling needs one mean and one scale per feature, got {len(self.mean)} means and "
                             f"{len(self.scale)} scales")
        if not all(math.isfinite(m) for m in self.mean) or not all(math.isfinite(s) and s > 0 for s in self.scale):
            raise ValueError("a Scaling's means must be finite and its scales finite and positive")

    @classmethod
    def fit(cls, x: torch.Tensor) -> Scaling:
        """The mean and standard deviation (ddof 0) of each column of x (n, d), in float64."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or len(x) == 0:
            raise ValueError(f"x must be a tensor of shape (n, d) with n >= 1, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        x64 = x.detach().double()
        mean, std = x64.mean(dim=0), x64.std(dim=0, correction=0)
        scale = torch.where(std > 0, std, torch.ones_like(std))
        return cls(tuple(mean.tolist()), tuple(scale.tolist()))

    @property
    def features(self) -> int:
        return len(self.mean)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x in standard units, (x - mean) / scale, in x's dtype."""
        mean, scale = self._tensors(x)
        return (x - mean) / scale

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Standard units back to the data's: x·scale + mean, in x's dtype."""
        mean, scale = self._tensors(x)
        return x * scale + mean

    def log_jacobian(self) -> float:
        """sum_j log scale_j: a density over standardised x, minus this, is the density over the
        data's own units (log p(x) = log p_std((x - mean) / scale) - sum_j log scale_j)."""
        return math.fsum(math.log(s) for s in self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, value: Any) -> Scaling:
        if not isinstance(value, dict) or set(value) != {"mean", "scale"}:
            raise ValueError(f"a scaling must be a dict with 'mean' and 'scale', got {value!r:.80}")
        numbers = [v for key in ("mean", "scale") for v in (value[key] if isinstance(value[key], list) else [None])]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ValueError("a scaling's 'mean' and 'scale' must be lists of numbers")
        return cls(tuple(map(float, value["mean"])), tuple(map(float, value["scale"])))

    def _tensors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.shape[-1:] != (self.features,):
            raise ValueError(f"this scaling is for data with {self.features} columns, got shape "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return (torch.tensor(self.mean, dtype=x.dtype, device=x.device),
                torch.tensor(self.scale, dtype=x.dtype, device=x.device))


def scale_problem(x: torch.Tensor) -> str | None:
    """Why the columns of x are too far from unit scale for vaelib's defaults, or None.

    Far means: a column's standard deviation or mean exceeds SCALE_LIMIT (10) in size, every
    standard deviation is below 1/SCALE_LIMIT, or the largest standard deviation exceeds the median
    one by more than a factor SPREAD_LIMIT (100). Constant columns are left out."""
    x64 = x.detach().double()
    std, mean = x64.std(dim=0, correction=0), x64.mean(dim=0).abs()
    varying = std[std > 0]
    if len(varying) == 0:
        return None
    low, high, largest_mean = varying.min().item(), varying.max().item(), mean.max().item()
    median = varying.median().item()
    if 1 / SCALE_LIMIT <= high <= SCALE_LIMIT and largest_mean <= SCALE_LIMIT and high / median <= SPREAD_LIMIT:
        return None
    return (f"the columns are far from unit scale (standard deviations from {low:.3g} to {high:.3g}, means up to "
            f"{largest_mean:.3g} in size), while the defaults (learning rate, decoder variance 1/2) suit "
            "standardised data")


def warn_scale(x: torch.Tensor, advice: str) -> None:
    """Issue a ``DataScaleWarning`` when ``scale_problem(x)`` finds one, ending with ``advice``."""
    problem = scale_problem(x)
    if problem is not None:
        warnings.warn(f"{problem}; {advice}", DataScaleWarning, stacklevel=2)
