"""The protocol that the engine's two trainers satisfy: ``GenericTrainer`` (``_generic.py``, the
runs' own modules vectorised with ``torch.func``) and ``KernelTrainer`` (``_kernel.py``, the C
kernel). ``fit_batched`` (``_fit.py``) drives either through these methods alone: it draws each
epoch's inputs, asks for an epoch, checks the terms, keeps the histories and the files.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from vaelib.objectives import Objective

# Per group of runs that share an objective kind: the runs' indices and each named term at every
# step of every run, as a (steps, runs) tensor.
EpochTerms = list[tuple[list[int], dict[str, torch.Tensor]]]


@runtime_checkable
class Trainer(Protocol):
    """Trains R runs of one architecture, epoch by epoch, on tensors stacked along a run axis."""

    backend: str  # which computes, "kernel" or "torch": recorded in the training state

    def epoch(self, x: torch.Tensor, order: torch.Tensor, draws: dict[str, torch.Tensor],
              sizes: list[int]) -> EpochTerms:
        """One epoch of every run: minibatches of ``sizes`` points taken in each run's ``order``
        (runs, n), with the random ``draws`` its model's forward pass takes, by keyword (runs, n,
        width): a VAE's reparameterisation ``noise``, a denoising model's corruption."""
        ...

    def mark(self) -> None:
        """Remember the current state (the last good one), to go back to with ``rollback``."""
        ...

    def rollback(self) -> None:
        """Go back to the state ``mark`` remembered."""
        ...

    def all_finite(self) -> bool:
        """Whether every trained tensor of every run is finite (a quick check of the whole state)."""
        ...

    def parameters_finite(self) -> list[bool]:
        """Per run: whether all its tensors are finite (asked only when ``all_finite`` is not)."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything an epoch changes, copied: what a training-state file keeps."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``state``; raises ValueError, KeyError, ... when it does not fit these runs."""
        ...

    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        """Copy every run's trained tensors into its own model and objective."""
        ...
