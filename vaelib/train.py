"""fit(): the training loop. It knows models and objectives only through their interfaces:
``objective(x, model(x))`` returns named scalar terms with a ``"loss"``; the loop minimises that and
logs every term, once per epoch, as the mean over the epoch's minibatches (weighted by batch size).

Two promises beyond the loop itself:

* **A diverging run keeps its last good state.** When a term or a gradient becomes NaN or infinite,
  training stops with ``TrainingDiverged`` naming the epoch, the step and the term. The model, the
  objective (its alpha included) and the optimiser are put back to the end of the last completed
  epoch, the last point at which all of them, the history and the random generators agree, so it
  is a state one can inspect, save and resume from; a checkpoint file, if one is kept, gets it too.
* **An interrupted run resumes exactly, and only as itself.** With ``checkpoint=path`` the whole
  training state (model, objective, optimiser, history, the global and data-order random
  generators, the run's settings) is saved every ``checkpoint_every`` epochs; ``resume_from=path``
  continues from it, and the final parameters and history are bitwise those of a run that was never
  interrupted (same machine, same seed), because epoch k + 1 draws its data order and sampling
  noise from the generator states saved at the end of epoch k. The checkpoint records the run's
  fingerprint (``settings_fingerprint``: the model's class, arguments and layers, the objective's
  class and settings, batch size, seed, data); resuming with anything else is refused with the
  differences named, before anything is loaded.

Everything that can be checked is checked before the first epoch: the arguments, the data (its
dtype against the model's, its range for a Bernoulli decoder), the device, the checkpoint's path
and the file to resume from. Those checks, ``History``, ``TrainingDiverged`` and the fingerprint
are the rules every run obeys, shared with the batched engine: they live in ``vaelib.runs``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks, threads
from vaelib.checkpoint import CheckpointError, check_generator_state, load_checkpoint, save_checkpoint
from vaelib.objectives import Objective
from vaelib.scaling import Scaling
# The rules every run obeys live in vaelib.runs; the names below stay importable from here too.
from vaelib.runs import (OPTIMIZERS, RESUME_MUST_MATCH, History, TrainingDiverged, TrainingSettings,
                         changed_setup_message, check_checkpoint_paths, check_data_dtype, check_decoder_range,
                         check_file_arguments, check_lr, data_sha256, fingerprint_differences, resolve_device,
                         settings_fingerprint, training_settings)

__all__ = ["History", "TrainingDiverged", "TrainingSettings", "fit", "heldout_terms"]


@dataclass
class _TrainingState:
    """Everything needed to go back to an epoch boundary: the last state known to be good."""

    model: dict[str, Any]
    objective: dict[str, Any]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]

    @classmethod
    def capture(cls, model: nn.Module, objective: Objective, opt: torch.optim.Optimizer,
                order_rng: torch.Generator, device: torch.device) -> _TrainingState:
        return cls(_cloned(model.state_dict()), _cloned(objective.state_dict()), _cloned(opt.state_dict()),
                   _rng_state(order_rng, device))

    def restore(self, model: nn.Module, objective: Objective, opt: torch.optim.Optimizer) -> None:
        model.load_state_dict(self.model)
        objective.load_state_dict(self.objective)
        opt.load_state_dict(self.optimizer)


def _cloned(state: Any) -> Any:
    """A copy of a (nested) state dict whose tensors are cloned and whose containers are new: what
    ``copy.deepcopy`` gives, without its bookkeeping, which costs more than the copying itself when
    it runs every epoch on a small model."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return type(state)((key, _cloned(value)) for key, value in state.items())
    if isinstance(state, (list, tuple)):
        return type(state)(_cloned(value) for value in state)
    return state


class _NonFinite(Exception):
    def __init__(self, step: int, term: str):
        super().__init__(term)
        self.step, self.term = step, term


def fit(model: nn.Module, objective: Objective, x: torch.Tensor, settings: TrainingSettings | None = None, *,
        epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
        optimizer: str | None = None, seed: int | None = None, progress: bool = True,
        device: str | torch.device | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
        resume_from: str | os.PathLike[str] | None = None, overwrite: bool = False,
        scaling: Scaling | None = None, heldout: torch.Tensor | None = None, patience: int | None = None,
        lr_schedule: str | None = None) -> History:
    """Train ``model`` by minimising ``objective`` on the rows of ``x`` with minibatches.

    The run's settings are ``settings`` (a ``vaelib.TrainingSettings``; default
    ``TrainingSettings()``: 10 epochs, minibatches of 100, Adam with lr 1e-3, seed 0, the CPU), each
    replaced by the keyword argument of its name where one is given: ``fit(model, objective, x,
    epochs=50)`` trains 50 epochs. (``backend`` is ``fit_batched``'s: ``fit`` trains with PyTorch.)

    The seed fixes the data order (a fresh permutation each epoch) and the sampling noise of the
    model (e.g. the VAE's reparameterisation); seed the model's initial weights with
    ``vaelib.seed_everything`` before building it. Learnable parameters of the objective (such as a
    Lagrange multiplier) are optimised together with the model's. Returns the per-epoch ``History``.

    ``checkpoint``: a file to save the training state to, every ``checkpoint_every`` epochs and
    after the last (atomically: a crash while saving leaves the previous file whole). An existing
    file is replaced only with ``overwrite=True``, or when it is the ``resume_from`` file (the run
    continues in place). ``resume_from``: a checkpoint saved by ``fit`` to continue from; ``epochs``
    stays the total, so ``fit(..., epochs=200, resume_from=f)`` after 120 saved epochs trains 80
    more. The model and objective must be built as before, and batch size, optimiser, seed and data
    must be the same: anything else raises ``CheckpointError`` naming what differs (a different
    ``lr`` is allowed, e.g. to continue a diverged run with a smaller step). ``scaling``: the
    ``vaelib.scaling.Scaling`` that standardised x, recorded in the checkpoint (not applied here).

    ``heldout``: rows scored after every epoch (``heldout_terms``: the objective in evaluation
    mode, its noise seeded by the run's seed); the history gets their terms as ``heldout_loss``,
    ``heldout_recon``, ... ``patience``: with ``heldout``, stop when the held-out loss has not
    improved for that many epochs, and put the model, objective, optimiser and history back to the
    best epoch (the checkpoint too), so that the run ends with its best weights.
    ``lr_schedule``: ``"cosine"`` (``torch.optim.lr_scheduler.CosineAnnealingLR`` over ``epochs``)
    or ``"plateau"`` (``ReduceLROnPlateau`` with torch's defaults, on the held-out loss when there
    is one, else the training loss), stepped once per epoch; the history gets each epoch's ``lr``.
    A schedule's state is not in the checkpoint, so a run with one cannot be resumed.

    The caller's random state is left as it was: the run draws from generators of its own (PyTorch's
    global one is forked for the run and restored afterwards), and PyTorch runs on
    ``vaelib.threads.torch_threads()`` threads during training (the caller's count is restored).

    Raises ``TrainingDiverged`` (epoch, step and term named) when a term or gradient is not finite.
    """
    x = _checks.data_matrix("x", x).detach()  # the data is not trained: no gradient flows into it
    _check_fit_arguments(model, objective, on_epoch_end)
    if scaling is not None and (not isinstance(scaling, Scaling) or scaling.features != x.shape[1]):
        raise TypeError(f"scaling must be a vaelib.scaling.Scaling of x's {x.shape[1]} columns or None, got "
                        f"{scaling!r:.80}")
    heldout = _checked_heldout(heldout, patience, lr_schedule, resume_from, x)
    run = training_settings(settings, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                            device=device)
    if run.backend == "kernel":
        raise ValueError("backend='kernel' is fit_batched's C kernel; fit trains with PyTorch: use "
                         "vaelib.fit_batched, or leave backend at 'auto'")
    check_file_arguments(checkpoint_every, checkpoint, resume_from)
    check_data_dtype(x, [model])
    check_lr(run.lr, [p for _, p in _trainable_parameters(model, objective)])
    where = resolve_device(run.device)
    check_checkpoint_paths(checkpoint, resume_from, overwrite)
    with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []), threads.limited():
        return _fit(model, objective, x, run, progress, where, on_epoch_end, checkpoint, checkpoint_every,
                    resume_from, scaling, _Extras(heldout, patience, lr_schedule))


def _fit(model: nn.Module, objective: Objective, x: torch.Tensor, run: TrainingSettings, progress: bool,
         device: torch.device, on_epoch_end: Callable[[int, dict[str, float]], None] | None,
         checkpoint: str | os.PathLike[str] | None, checkpoint_every: int,
         resume_from: str | os.PathLike[str] | None, scaling: Scaling | None = None,
         extras: _Extras | None = None) -> History:
    extras = extras or _Extras()
    model.to(device).train()  # training mode: e.g. a denoising model corrupts its input only here
    objective.to(device)
    x = x.to(device)
    check_decoder_range(model, x)
    named_params = _trainable_parameters(model, objective)
    opt = OPTIMIZERS[run.optimizer]([p for _, p in named_params], lr=run.lr, foreach=True)  # type: ignore[call-arg]
    settings = fingerprint = None
    if checkpoint is not None or resume_from is not None:
        recorded = {"batch_size": run.batch_size, "optimizer": run.optimizer, "seed": run.seed, "rows": x.shape[0],
                    "data_sha256": data_sha256(x)}
        settings, fingerprint = {**recorded, "lr": run.lr}, settings_fingerprint(model, objective, **recorded)
    order_rng = torch.Generator()
    if resume_from is None:
        torch.manual_seed(run.seed)
        order_rng.manual_seed(run.seed)
        history = History()
    else:
        assert fingerprint is not None  # made above whenever resume_from is given
        history = _resume(Path(resume_from), model, objective, opt, order_rng, device, run.lr, fingerprint,
                          run.epochs, heldout=extras.heldout is not None)

    def save(rng: dict[str, torch.Tensor]) -> None:
        assert checkpoint is not None
        save_checkpoint(checkpoint, model, objective=objective, optimizer=opt, history=history,
                        rng_state=rng, fit_settings=settings, fingerprint=fingerprint, scaling=scaling)

    epochs = run.epochs
    schedule = extras.schedule(opt, epochs)
    heldout = None if extras.heldout is None else extras.heldout.to(device)
    best = _Best.of(history)
    bar = tqdm(range(len(history), epochs), initial=len(history), total=epochs, desc="training",
               disable=not progress, leave=False)
    for epoch in bar:
        start = _TrainingState.capture(model, objective, opt, order_rng, device)
        try:
            means = _run_epoch(model, objective, x, opt, named_params, order_rng, run.batch_size)
        except _NonFinite as bad:
            start.restore(model, objective, opt)
            if checkpoint is not None:
                save(start.rng)
            raise TrainingDiverged(_diverged_message(epoch + 1, bad, len(history), checkpoint), history,
                                   epoch=epoch + 1, step=bad.step, term=bad.term) from None
        if heldout is not None:
            means.update({f"heldout_{name}": v for name, v in heldout_terms(model, objective, heldout, run.seed).items()})
        if schedule is not None:
            means["lr"] = opt.param_groups[0]["lr"]
            _step(schedule, means)
        history.append(means)
        bar.set_postfix(loss=f"{means['loss']:.4g}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, means)
        if heldout is not None and means["heldout_loss"] < best.loss:
            best = _Best(means["heldout_loss"], len(history), _TrainingState.capture(model, objective, opt,
                                                                                     order_rng, device))
        if extras.patience is not None and len(history) - best.epoch >= extras.patience and best.state is not None:
            best.state.restore(model, objective, opt)
            for values in history.terms.values():
                del values[best.epoch:]
            if checkpoint is not None:
                save(best.state.rng)
            break
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
            save(_rng_state(order_rng, device))  # after the callback: it may draw random numbers too
    return history


@dataclass
class _Extras:
    """What a run may add to the loop: held-out rows, early stopping, a learning-rate schedule."""

    heldout: torch.Tensor | None = None
    patience: int | None = None
    lr_schedule: str | None = None

    def schedule(self, opt: torch.optim.Optimizer, epochs: int) -> Any:
        if self.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        if self.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        return None


@dataclass
class _Best:
    """The epoch (1-based) with the lowest held-out loss so far, and the state at its end."""

    loss: float = math.inf
    epoch: int = 0
    state: _TrainingState | None = None

    @classmethod
    def of(cls, history: History) -> _Best:
        """The best epoch of a resumed history (its state is not kept: the run continues from its end)."""
        losses = history.terms.get("heldout_loss", [])
        if not losses:
            return cls()
        best = min(range(len(losses)), key=losses.__getitem__)
        return cls(losses[best], best + 1)


LR_SCHEDULES = ("cosine", "plateau")


def _step(schedule: Any, means: dict[str, float]) -> None:
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(means.get("heldout_loss", means["loss"]))
    else:
        schedule.step()


def _checked_heldout(heldout: object, patience: object, lr_schedule: object, resume_from: object,
                     x: torch.Tensor) -> torch.Tensor | None:
    if heldout is not None:
        heldout = _checks.data_matrix("heldout", heldout, x.shape[1]).detach()
        if heldout.dtype != x.dtype:
            raise TypeError(f"heldout has dtype {heldout.dtype}, x {x.dtype}; give both the same dtype")
    if patience is not None:
        _checks.positive_int("patience", patience)
        if heldout is None:
            raise ValueError("patience stops training when the held-out loss stops improving: give heldout rows too")
    if lr_schedule is not None:
        _checks.one_of("lr_schedule", lr_schedule, LR_SCHEDULES)
        if resume_from is not None:
            raise ValueError("a run with an lr_schedule cannot be resumed: the schedule's state is not in the "
                             "checkpoint; train it anew")
    return heldout


@torch.no_grad()
def heldout_terms(model: nn.Module, objective: Objective, x: torch.Tensor, seed: int) -> dict[str, float]:
    """The objective's terms on held-out rows x, the model in evaluation mode, its noise drawn from
    PyTorch's generator seeded with ``seed`` inside a fork (the caller's random state is untouched)."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            terms = objective(x, model(x))
    finally:
        model.train(was_training)
    return {name: value.item() for name, value in terms.items()}


def _run_epoch(model: nn.Module, objective: Objective, x: torch.Tensor, opt: torch.optim.Optimizer,
               named_params: list[tuple[str, nn.Parameter]], order_rng: torch.Generator,
               batch_size: int) -> dict[str, float]:
    """One pass over a fresh permutation of x; the means of the terms, or ``_NonFinite``."""
    sums: dict[str, float] = {}
    step = 0
    for step, idx in enumerate(torch.randperm(x.shape[0], generator=order_rng).split(batch_size), start=1):
        batch = x[idx.to(x.device)]
        terms = objective(batch, model(batch))
        values = _term_values(objective, terms)
        bad = next((f"the term {name!r}" for name, v in values.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise _NonFinite(step, bad)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        bad = _first_non_finite_gradient(named_params)
        if bad is not None:
            raise _NonFinite(step, bad)
        objective.before_step()
        opt.step()
        objective.after_step({name: value.detach() for name, value in terms.items()})
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * len(idx)
    bad = _first_non_finite_state(model, objective)
    if bad is not None:  # an update overflowed: never record or save such an epoch
        raise _NonFinite(step, bad)
    return {name: total / x.shape[0] for name, total in sums.items()}


def _term_values(objective: Objective, terms: object) -> dict[str, float]:
    """The terms as Python floats, after checking they are what the trainer needs."""
    name = type(objective).__name__
    if not isinstance(terms, Mapping) or "loss" not in terms:
        raise ValueError(f"{name} must return a dict of named terms with a 'loss' entry, got "
                         f"{sorted(terms) if isinstance(terms, Mapping) else type(terms).__name__}")
    values = {}
    for term, value in terms.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} returned the term {term!r} as {shape}; every term must be a scalar "
                             "tensor (average over the batch inside the objective)")
        values[term] = value.detach().item()
    return values


def _first_non_finite_gradient(named_params: list[tuple[str, nn.Parameter]]) -> str | None:
    """"the gradient of '<name>'" for the first non-finite gradient, else None.

    One float64 sum per gradient decides quickly (float32 values cannot overflow a float64 sum);
    only when it is not finite are the gradients scanned to name the culprit.
    """
    grads = [p.grad for _, p in named_params if p.grad is not None]
    if not grads or torch.isfinite(torch.stack([g.sum(dtype=torch.float64) for g in grads]).sum()):
        return None
    for name, p in named_params:
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return f"the gradient of {name!r}"
    return None


def _first_non_finite_state(model: nn.Module, objective: Objective) -> str | None:
    """"the parameter '<name>' after the update" for the first non-finite entry, else None."""
    for prefix, module in (("model", model), ("objective", objective)):
        for name, value in module.state_dict().items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                return f"the parameter {prefix + '.' + name!r} after the update"
    return None


def _diverged_message(epoch: int, bad: _NonFinite, completed: int, checkpoint: str | os.PathLike[str] | None) -> str:
    where = f"the end of epoch {completed}" if completed else "their state before training"
    saved = f"; that state was saved to {checkpoint}" if checkpoint is not None else ""
    return (f"training stopped at epoch {epoch}, step {bad.step}: {bad.term} is not finite. The model, "
            f"objective and optimiser were restored to {where} (the last good state); history holds "
            f"{completed} completed epochs{saved}. Try a smaller learning rate or check the data's scale.")


def _trainable_parameters(model: nn.Module, objective: Objective) -> list[tuple[str, nn.Parameter]]:
    named = [(f"model.{n}", p) for n, p in model.named_parameters() if p.requires_grad]
    named += [(f"objective.{n}", p) for n, p in objective.trainer_parameters()]
    if not named:
        raise ValueError(f"model ({type(model).__name__}) and objective ({type(objective).__name__}) have no "
                         "trainable parameters: there is nothing to fit")
    return named


def _rng_state(order_rng: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """The generators a run draws from: the global one (sampling noise) and the data order."""
    state = {"torch": torch.get_rng_state(), "order": order_rng.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _resume(path: Path, model: nn.Module, objective: Objective, opt: torch.optim.Optimizer,
            order_rng: torch.Generator, device: torch.device, lr: float, fingerprint: dict[str, Any],
            epochs: int, heldout: bool = False) -> History:
    """Load the training state saved in ``path``; return its history (the epochs already done).

    Everything is checked before anything is loaded: the file, its fingerprint against this run's,
    the number of epochs and the random states."""
    ckpt = load_checkpoint(path)
    if ckpt.fit_settings is None or not {"torch", "order"} <= set(ckpt.rng_state):
        raise CheckpointError(f"resume_from={str(path)!r} was not saved by fit (it holds no fit settings or "
                              "random state), so training cannot resume from it")
    saved = ckpt.fingerprint or {"run": {key: ckpt.fit_settings.get(key) for key in RESUME_MUST_MATCH}}  # older files
    differences = fingerprint_differences(saved, fingerprint)
    if differences:
        raise CheckpointError(changed_setup_message("resume_from", path, differences))
    done = len(next(iter(ckpt.history.values()), []))
    scored = any(name.startswith("heldout_") for name in ckpt.history)
    if done and scored != heldout:  # every term of a history spans every epoch
        raise ValueError(f"resume_from={str(path)!r} was trained {'with' if scored else 'without'} held-out rows "
                         f"scored every epoch; resume it {'with the same' if scored else 'without'} heldout rows")
    if epochs < done:
        raise ValueError(f"epochs={epochs} is less than the {done} epochs already in {path}; epochs is the "
                         f"total number of epochs, so pass epochs >= {done}")
    torch_state = check_generator_state(path, "torch", ckpt.rng_state["torch"])
    order_state = check_generator_state(path, "order", ckpt.rng_state["order"])
    cuda_state = None
    if device.type == "cuda" and "cuda" in ckpt.rng_state:
        cuda_state = check_generator_state(path, "cuda", ckpt.rng_state["cuda"], device)
    ckpt.restore(model, objective, opt)
    for group in opt.param_groups:
        group["lr"] = lr
    torch.set_rng_state(torch_state)
    order_rng.set_state(order_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)
    return History({name: list(values) for name, values in ckpt.history.items()})


def _check_fit_arguments(model: object, objective: object, on_epoch_end: object) -> None:
    """What only fit takes: one model and one objective, and a callback."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. vaelib.VAE), got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a vaelib.objectives.Objective, got {type(objective).__name__}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end must be a function (epoch, means) -> None or None, got "
                        f"{type(on_epoch_end).__name__}")
