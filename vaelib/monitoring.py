"""Curves while many runs train at once: ``fit_batched`` with a call after every epoch.

``vaelib.fit`` and ``vaelib.wake_sleep.fit_wake_sleep`` call ``on_epoch_end`` after each epoch, so
that a ``vaelib.estimators.BoundMonitor`` records a bound on training and held-out data as they
train (Kingma & Welling's Figure 2). ``vaelib.fit_batched`` trains many runs as one computation
and has no such hook. ``fit_batched_monitored`` gives it one without a second training loop: it
calls ``fit_batched`` once per epoch, each time for one epoch more, resuming from the training
state the previous call saved in a temporary folder (a resumed run continues exactly as an
uninterrupted one would), and in between calls ``on_epoch_end(epoch, histories)`` while the models
hold that epoch's weights. Saving and reading the state costs a little time per epoch.
Models with ``ParametricTanh`` units cannot be monitored this way yet: after an epoch their
learned a and b show in the layer's description, and ``fit_batched`` then takes the trained
models for another architecture than the saved state's.

Taught in "Kingma and Welling's experiments".
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib import _checks
from vaelib.engine import Histories, fit_batched
from vaelib.objectives import Objective

_OWN = ("checkpoint", "checkpoint_every", "resume_from", "overwrite")


def fit_batched_monitored(models: Sequence[nn.Module], objectives: Sequence[Objective], x: torch.Tensor, *,
                          seeds: Sequence[int], epochs: int,
                          on_epoch_end: Callable[[int, Histories], None], **settings: Any) -> Histories:
    """Train as ``vaelib.fit_batched(models, objectives, x, seeds=seeds, epochs=epochs, **settings)``
    does, and call ``on_epoch_end(epoch, histories)`` after every epoch (``epoch`` counts from 0, as
    in ``vaelib.fit``; ``histories`` are the runs' histories so far). Returns the final histories.

    ``settings`` are ``fit_batched``'s other keywords (``batch_size``, ``lr``, ``progress``, ...);
    the checkpoint keywords are this function's own business and refused.
    """
    _checks.positive_int("epochs", epochs)
    if not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end must be a function (epoch, histories) -> None, got "
                        f"{type(on_epoch_end).__name__}")
    taken = sorted(set(settings) & set(_OWN))
    if taken:
        raise TypeError(f"fit_batched_monitored keeps its own training state between epochs; drop "
                        f"{taken[0]!r} (call vaelib.fit_batched to checkpoint a run)")
    with tempfile.TemporaryDirectory(prefix="vaelib-monitored-") as folder:
        state = Path(folder) / "state.safetensors"
        for epoch in range(epochs):
            histories = fit_batched(models, objectives, x, seeds=seeds, epochs=epoch + 1, checkpoint=state,
                                    resume_from=state if epoch else None, **settings)
            on_epoch_end(epoch, histories)
    return histories
