"""Comparative claims over seeds: "A is clearly above B", "A is as good as B", with a stated margin.

A sentence such as "the denoising code separates the classes better" is a claim about a random
quantity: another seed trains other networks. The book states such a claim only when it holds over
several seeds, measured in *combined standard errors of the seeds*,

    separation(a, b) = (mean(a) - mean(b)) / sqrt(s_a^2 / n_a + s_b^2 / n_b),

with s the sample standard deviation (ddof = 1) over the n seeds of each side (Welch's statistic;
with equal n it is (mean_a - mean_b) / sqrt((s_a^2 + s_b^2) / n), the form the comparison chapter
prints). "Clearly above" means a separation above ``margin`` (2 by default); "as good as" means a
separation within ``±margin``. Every chapter asserts its comparative sentences with these, so a
finding that flips on another seed fails the build instead of reaching the page.

Taught in the comparison chapter ("Check it"); used by every chapter that compares over seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MARGIN = 2.0  # combined standard errors: the book's default margin for a comparative sentence


@dataclass(frozen=True)
class SeedSummary:
    """The mean, sample standard deviation and count of one quantity over seeds."""

    mean: float
    std: float
    n: int

    @property
    def standard_error(self) -> float:
        return self.std / math.sqrt(self.n)

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n = {self.n})"


def summarise(values: Sequence[float] | SeedSummary, name: str = "values") -> SeedSummary:
    """Mean, standard deviation (ddof = 1) and count of ``values``: one number per seed."""
    if isinstance(values, SeedSummary):
        return values
    numbers = [float(v) for v in values]
    if len(numbers) < 2:
        raise ValueError(f"{name} needs at least 2 seeds to state a spread, got {len(numbers)}; "
                         "train more seeds (the book uses at least 3)")
    bad = [v for v in numbers if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} holds non-finite values {bad}: a diverged run cannot be compared")
    mean = sum(numbers) / len(numbers)
    return SeedSummary(mean, _sample_std(numbers, mean), len(numbers))


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value) of a quantity over runs,
    as a table shows it (``vaelib.tables.mean_std_cell``). Used by Table 1 (Part IV), the comparison
    (Part III) and ``vaelib.sweep``'s summaries."""
    numbers = [float(v) for v in values]
    if not numbers:
        raise ValueError("mean_std needs at least one value")
    if not all(map(math.isfinite, numbers)):
        raise ValueError(f"mean_std got a value that is not finite ({next(v for v in numbers if not math.isfinite(v))})"
                         "; a mean over runs needs every run's number")
    largest = max(map(abs, numbers))
    if largest > 1e150:  # the sums and squares below would overflow: computed on the values / largest
        scaled = mean_std([v / largest for v in numbers])
        return {k: None if v is None else v * largest for k, v in scaled.items()}
    mean = sum(numbers) / len(numbers)
    return {"mean": mean, "std": _sample_std(numbers, mean) if len(numbers) > 1 else None}


def _sample_std(numbers: Sequence[float], mean: float) -> float:
    return math.sqrt(sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1))


def separation(a: Sequence[float] | SeedSummary, b: Sequence[float] | SeedSummary) -> float:
    """(mean(a) - mean(b)) in combined standard errors of the seeds; +-inf when both sides have no
    spread and differ, 0 when they are equal."""
    a, b = summarise(a, "a"), summarise(b, "b")
    difference = a.mean - b.mean
    scale = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
    if scale == 0.0:
        return 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    return difference / scale


def check_above(a, b, *, margin: float = MARGIN, what: str = "a > b") -> float:
    """Assert that ``a`` is clearly above ``b``: a separation above ``margin``. Returns it."""
    s = separation(a, b)
    if not s > margin:
        raise AssertionError(f"{what}: not clearly above (separation {s:.2f} combined standard errors, "
                             f"needs > {margin:g}); a = {summarise(a)}, b = {summarise(b)}")
    return s


def check_below(a, b, *, margin: float = MARGIN, what: str = "a < b") -> float:
    """Assert that ``a`` is clearly below ``b``: a separation below ``-margin``. Returns it."""
    s = separation(a, b)
    if not s < -margin:
        raise AssertionError(f"{what}: not clearly below (separation {s:.2f} combined standard errors, "
                             f"needs < -{margin:g}); a = {summarise(a)}, b = {summarise(b)}")
    return s


def check_as_good_as(a, b, *, margin: float = MARGIN, what: str = "a ≈ b") -> float:
    """Assert that ``a`` and ``b`` are indistinguishable over these seeds: |separation| ≤ margin."""
    s = separation(a, b)
    if not abs(s) <= margin:
        raise AssertionError(f"{what}: the seeds tell them apart (separation {s:.2f} combined standard "
                             f"errors, needs within ±{margin:g}); a = {summarise(a)}, b = {summarise(b)}")
    return s
