"""``fit_batched``'s training-state files: what is checked when one is read, before any training
(``read_saved_state``), and when its trainer state is loaded (``restore_trainer``).

A file holds ``backend`` (which path trained it: "kernel" or "torch"; files written before this
key was renamed call it ``engine`` and are read alike), ``fingerprint``, ``trainer`` (the
trainer's ``state()``), ``generators`` (every run's data-order and noise generators) and
``histories``. It is written with ``vaelib.checkpoint.save_state`` under ``STATE_CONTENT``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaelib.checkpoint import CheckpointError, check_generator_state, load_state
from vaelib.engine._trainer import Trainer
from vaelib.runs import changed_setup_message, fingerprint_differences

# What a training-state file of fit_batched says it holds (vaelib.checkpoint.load_state checks it).
STATE_CONTENT = "fit_batched"


def read_saved_state(path: Path, fingerprint: dict[str, Any], epochs: int, device: torch.device) -> dict[str, Any]:
    """The training state in ``path``, after checking everything that does not need the trainer:
    its fingerprint against this call's, its histories, the epochs and every generator state.
    A file that calls the backend ``engine`` (written before the key was renamed) is read alike."""
    state = load_state(path, content=STATE_CONTENT)
    if "engine" in state and "backend" not in state:
        state["backend"] = state.pop("engine")

    def invalid(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid training state of fit_batched: {reason}")

    expected = {"backend", "fingerprint", "trainer", "generators", "histories"}
    if set(state) != expected:
        raise invalid(f"it holds {sorted(state)}, expected {sorted(expected)}")
    differences = fingerprint_differences(state["fingerprint"], fingerprint)
    if differences:
        raise CheckpointError(changed_setup_message("resume_from", path, differences))
    runs = len(fingerprint["runs"])
    if state["backend"] not in ("kernel", "torch"):
        raise invalid(f"its backend is {state['backend']!r}, neither 'kernel' nor 'torch'")
    histories = state["histories"]
    lengths = set()
    if not isinstance(histories, list) or len(histories) != runs:
        raise invalid(f"it does not hold one history per run ({runs})")
    for r, terms in enumerate(histories):
        if not isinstance(terms, dict) or not all(isinstance(v, list) for v in terms.values()):
            raise invalid(f"the history of run {r} is not a dict of lists")
        for values in terms.values():
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise invalid(f"the history of run {r} holds a value that is not a number")
            lengths.add(len(values))
    if len(lengths) != 1:
        raise invalid(f"its histories have different lengths {sorted(lengths)}")
    done = lengths.pop()
    if epochs < done:
        raise ValueError(f"epochs={epochs} is less than the {done} epochs already in {path}; epochs is the "
                         f"total number of epochs, so pass epochs >= {done}")
    generators = state["generators"]
    if not isinstance(generators, dict) or set(generators) != {"order", "noise"} or not all(
            isinstance(generators[kind], list) and len(generators[kind]) == runs for kind in generators):
        raise invalid(f"it does not hold an order and a noise generator for each of the {runs} runs")
    for kind, on in (("order", "cpu"), ("noise", device)):
        for r, generator in enumerate(generators[kind]):
            check_generator_state(path, f"the {kind} generator of run {r}", generator, on)
    return state


def restore_trainer(path: Path, trainer: Trainer, saved: dict[str, Any]) -> None:
    """Load the saved trainer state, after checking that it has the layout of this trainer's own."""
    if saved["backend"] != trainer.backend:
        raise CheckpointError(f"resume_from={str(path)!r} was trained on the {saved['backend']!r} path and would now "
                              f"continue on the {trainer.backend!r} path, which rounds differently; resume with "
                              f"backend={saved['backend']!r} (or 'auto')")
    check_layout(path, saved["trainer"], trainer.state(), "the trainer's state")
    try:
        trainer.restore(saved["trainer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path} does not fit these runs: {' '.join(str(exc).split())}") from None


def check_layout(path: Path, saved: object, template: object, where: str) -> None:
    """``saved`` has the structure of ``template``: the same keys, lengths, tensor shapes and dtypes,
    and scalar types. An empty dict in the template (a fresh optimiser's per-parameter state)
    admits any dict."""
    def mismatch(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} does not fit these runs: {where} {reason}")

    if isinstance(template, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.shape != template.shape or saved.dtype != template.dtype:
            found = f"{saved.dtype} {tuple(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise mismatch(f"is {found}, expected {template.dtype} {tuple(template.shape)}")
    elif isinstance(template, dict):
        if not isinstance(saved, dict):
            raise mismatch(f"is a {type(saved).__name__}, expected a dict")
        if template and set(saved) != set(template):
            raise mismatch(f"has the keys {sorted(map(str, saved))}, expected {sorted(map(str, template))}")
        for key in template:
            check_layout(path, saved[key], template[key], f"{where}[{key!r}]")
    elif isinstance(template, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(template):
            raise mismatch(f"is not a sequence of {len(template)} items")
        for i, (s, t) in enumerate(zip(saved, template)):
            check_layout(path, s, t, f"{where}[{i}]")
    elif type(saved) is not type(template):
        raise mismatch(f"is a {type(saved).__name__}, expected a {type(template).__name__}")
