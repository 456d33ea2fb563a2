"""``fit_batched``: the epochs of many runs, computed by one of the engine's trainers.

Each epoch: the next order and noise (``_inputs.py``, drawn one epoch ahead), the last good state
marked, one epoch of the trainer, the terms' means checked for finiteness (the first non-finite
step found and named when they are not), the histories appended, the training state saved
(``_state.py``) every ``checkpoint_every`` epochs. The trainer is the C kernel's or the generic
path's (``_trainer.py``: the protocol both satisfy).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks, threads
from vaelib.checkpoint import save_state
from vaelib.engine import _kernel
from vaelib.engine._generic import GenericTrainer
from vaelib.engine._inputs import EpochInputs, batch_sizes, random_draws
from vaelib.engine._kernel import KernelTrainer
from vaelib.engine._layout import Unsupported
from vaelib.engine._state import STATE_CONTENT, read_saved_state, restore_trainer
from vaelib.engine._trainer import EpochTerms, Trainer
from vaelib.objectives import Objective
from vaelib.runs import (History, TrainingDiverged, TrainingSettings, check_checkpoint_paths,
                         check_data_dtype, check_decoder_range, check_file_arguments, check_lr, data_sha256,
                         resolve_device, settings_fingerprint, training_settings)

LOG = logging.getLogger("vaelib.engine")


class Histories(list[History]):
    """What ``fit_batched`` returns: one ``History`` per run, in the order of the runs (a list), and
    what computed them: ``backend`` (``"kernel"`` or ``"torch"``) and, when ``backend="auto"`` took
    the generic path, ``fallback_reason`` (why the kernel does not train these runs; else None)."""

    def __init__(self, histories: Sequence[History], backend: str, fallback_reason: str | None = None):
        super().__init__(histories)
        self.backend, self.fallback_reason = backend, fallback_reason


class RunDiverged(TrainingDiverged):
    """A run of ``fit_batched`` became NaN or infinite.

    Every run was put back to the end of the last completed epoch (its model and objective hold
    that state); ``run`` is the index of the failing run, ``history`` its completed epochs and
    ``histories`` those of all runs; ``epoch`` and ``step`` (1-based) and ``term`` say where.
    """

    def __init__(self, message: str, histories: list[History], run: int, *, epoch: int, step: int, term: str):
        super().__init__(message, histories[run], epoch=epoch, step=step, term=term)
        self.run, self.histories = run, histories


def fit_batched(models: Sequence[nn.Module], objectives: Sequence[Objective], x: torch.Tensor,
                settings: TrainingSettings | None = None, *, seeds: Sequence[int], epochs: int | None = None,
                batch_size: int | None = None, lr: float | None = None, optimizer: str | None = None,
                progress: bool = True, device: str | torch.device | None = None, backend: str | None = None,
                checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
                resume_from: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Histories:
    """Train ``models[r]`` on ``objectives[r]`` with seed ``seeds[r]``, for every r, as one computation.

    The runs share ``settings`` (a ``vaelib.TrainingSettings``, default ``TrainingSettings()``),
    each field replaced by the keyword argument of its name where one is given, as in ``fit``; each
    run's seed is its entry of ``seeds`` (the settings' own ``seed`` is ``fit``'s).

    Each run is what ``vaelib.fit(models[r], objectives[r], x, seed=seeds[r], ...)`` with the same
    settings would train (see the module's docstring for how far the numbers agree), but all runs
    advance together, which is many times faster for small networks. The models must share one
    architecture (one class, the same layer sizes and settings); the objectives may be any mix of
    batchable objectives (all of the VAE family: ELBO, beta-VAE, sigma-VAE, eq. 7 with any alpha
    rule, the KL bound, GECO). Like ``fit``, it trains them in place: afterwards the models (moved to
    ``device``) hold the trained weights and each objective its trained multiplier. Returns one
    ``History`` per run, with the terms each objective logs in ``fit``.

    ``backend``: ``"kernel"``, the C kernel (an error if it cannot train these runs); ``"torch"``,
    the generic PyTorch path; ``"auto"`` (default), the kernel where it applies, else the generic
    path. The result says which computed (``Histories.backend``) and, when ``"auto"`` fell back,
    why (``Histories.fallback_reason``, also logged at DEBUG level on the ``vaelib.engine``
    logger). PyTorch runs on ``vaelib.threads.torch_threads()`` threads, the kernel on
    ``vaelib.threads.kernel_threads(runs)``.

    ``checkpoint``: a file to keep the state of every run in (see the module's docstring), saved
    every ``checkpoint_every`` epochs, after the last, and with the last good state when a run
    diverges; an existing file is replaced only with ``overwrite=True`` or when it is the
    ``resume_from`` file. ``resume_from``: such a file to continue from, with ``epochs`` the total.
    The runs must be set up as before (models, objectives, seeds, data, batch size, optimiser and
    lr): anything else raises ``CheckpointError`` naming what differs, before any training. With
    ``backend="auto"`` a resumed run keeps the path (kernel or generic) it was trained on.

    Raises ``RunDiverged`` (a ``TrainingDiverged``) when a run's loss or parameters stop being finite.
    """
    models, objectives, seeds = list(models), list(objectives), list(seeds)
    x = _checks.data_matrix("x", x).detach()  # the data is not trained: no gradient flows into it
    _check_arguments(models, objectives, seeds, x)
    shared = training_settings(settings, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                               device=device, backend=backend)
    check_file_arguments(checkpoint_every, checkpoint, resume_from)
    check_lr(shared.lr, list(models[0].parameters()))
    where = resolve_device(shared.device)
    check_checkpoint_paths(checkpoint, resume_from, overwrite, kind="training state")
    x = x.to(where)
    for model in models:
        model.to(where)
    check_decoder_range(models[0], x)
    sizes = batch_sizes(x.shape[0], shared.batch_size)
    draws = random_draws(models[0])
    fingerprint: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None
    if checkpoint is not None or resume_from is not None:
        fingerprint = {"runs": [settings_fingerprint(m, o, seed=s) for m, o, s in zip(models, objectives, seeds)],
                       "run": {"batch_size": shared.batch_size, "optimizer": shared.optimizer, "lr": shared.lr,
                               "rows": x.shape[0], "data_sha256": data_sha256(x)}}
    backend_asked, resumed_on = shared.backend, None
    if resume_from is not None:
        assert fingerprint is not None
        saved = read_saved_state(Path(resume_from), fingerprint, shared.epochs, where)
        if backend_asked == "auto":
            backend_asked = resumed_on = saved["backend"]
    with threads.limited():
        trainer, fallback_reason = _choose_trainer(backend_asked, models, objectives, x, sizes, shared.optimizer,
                                                   shared.lr, where)
        if resumed_on == "torch":
            fallback_reason = f"resumed from {resume_from}, which was trained on the generic path"
        if fallback_reason is not None:
            LOG.debug("fit_batched(backend='auto') trains %d runs on the generic PyTorch path, not the C kernel: %s",
                      len(models), fallback_reason)
        histories = [History() for _ in models]
        if saved is not None:
            assert resume_from is not None
            restore_trainer(Path(resume_from), trainer, saved)
            histories = [History({name: list(values) for name, values in terms.items()})
                         for terms in saved["histories"]]
        done, epochs = len(histories[0]), shared.epochs

        def save(generators: dict[str, list[torch.Tensor]]) -> None:
            assert checkpoint is not None
            save_state(checkpoint, {"backend": trainer.backend, "fingerprint": fingerprint, "trainer": trainer.state(),
                                    "generators": generators, "histories": [h.terms for h in histories]},
                       content=STATE_CONTENT)

        with EpochInputs(seeds, x.shape[0], sizes, draws, x.dtype, where, epochs, done,
                          None if saved is None else saved["generators"]) as inputs:
            boundary = inputs.start  # the generators at the end of the last completed epoch
            bar = tqdm(range(done, epochs), initial=done, total=epochs, desc=f"training {len(models)} runs",
                       disable=not progress, leave=False)
            for epoch in bar:
                order, drawn, after = inputs.next()
                trainer.mark()  # the last good state, to go back to if a run diverges
                terms = trainer.epoch(x, order, drawn, sizes)
                means = _epoch_means(terms, sizes)
                bad = None if trainer.all_finite() and _all_finite(means) else _first_non_finite(terms, trainer)
                if bad is not None:
                    trainer.rollback()
                    trainer.write_back(models, objectives)
                    if checkpoint is not None:
                        save(boundary)
                    run, step, term = bad
                    raise RunDiverged(_diverged_message(epoch + 1, run, seeds[run], step, term, len(histories[run]),
                                                        checkpoint), histories, run, epoch=epoch + 1, step=step,
                                      term=term)
                for (runs, group_terms), group_means in zip(terms, means):
                    for run, run_means in zip(runs, group_means):
                        histories[run].append(dict(zip(group_terms, run_means)))
                boundary = after
                bar.set_postfix(loss=f"{sum(h['loss'][-1] for h in histories) / len(histories):.4g}")
                if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                    save(boundary)
        trainer.write_back(models, objectives)
    return Histories(histories, trainer.backend, fallback_reason)


def kernel_covers(objective: Objective) -> bool:
    """Whether the C kernel can train ``objective``: it is of the VAE family and written as its
    ``Form`` alone (no method of its own that shapes training). Models and devices aside."""
    return _kernel.follows_the_family_formula(objective)


def kernel_available() -> bool:
    """Whether the C kernel could be built here (a C compiler works); ``backend="auto"`` uses it then."""
    return _kernel.load() is not None


def _choose_trainer(backend: str, models: list[nn.Module], objectives: list[Objective], x: torch.Tensor,
                    sizes: list[int], optimizer: str, lr: float, device: torch.device) -> tuple[Trainer, str | None]:
    """The kernel's trainer where it applies (and was not declined), else the generic path's; and,
    when ``backend="auto"`` falls back, the reason why the kernel does not train these runs. The
    generic path probes its stacked form on the data (``_generic.probe``)."""
    net = _kernel.kernel_net(models, objectives, optimizer, device) if backend != "torch" else None
    if isinstance(net, Unsupported) and backend == "kernel":
        raise ValueError(f"backend='kernel' cannot train these runs: {net.reason}; use backend='torch' or 'auto'")
    if net is None or isinstance(net, Unsupported):
        reason = net.reason if isinstance(net, Unsupported) else None
        return GenericTrainer(models, objectives, optimizer, lr, device, probe_data=x, batch_size=sizes[0]), reason
    return KernelTrainer(net, models, objectives, x, sizes, optimizer, lr), None


def _epoch_means(groups: EpochTerms, sizes: list[int]) -> list[list[list[float]]]:
    """Per group, per run, each term's epoch mean (in the order of the group's terms), summed step
    by step in double precision as vaelib.fit sums them (cumsum adds along the steps in order)."""
    weights = torch.tensor(sizes, dtype=torch.float64)[:, None]
    means = []
    for _, terms in groups:
        stacked = torch.stack([values.detach() for values in terms.values()]).cpu().double()  # (terms, steps, runs)
        means.append(((stacked * weights).cumsum(1)[:, -1] / sum(sizes)).T.tolist())
    return means


def _all_finite(means: list[list[list[float]]]) -> bool:
    """Whether every epoch mean is finite: then so is every step's term, since a sum in double
    precision of finite float32 values cannot overflow and a NaN or an infinity stays in it."""
    return all(math.isfinite(value) for group in means for run in group for value in run)


def _first_non_finite(groups: EpochTerms, trainer: Trainer) -> tuple[int, int, str] | None:
    """(run, step, what) for the earliest step at which a run's terms or parameters stop being
    finite, or None."""
    parameters_finite = trainer.parameters_finite()
    candidates = []
    for runs, terms in groups:
        names = list(terms)
        finite = {name: torch.isfinite(values) for name, values in terms.items()}  # (steps, runs)
        for j, run in enumerate(runs):
            bad = [(int((~finite[name][:, j]).nonzero()[0]), names.index(name)) for name in names
                   if not bool(finite[name][:, j].all())]
            if bad:
                step, name = min(bad)
                candidates.append((step + 1, run, f"the term {names[name]!r}"))
            elif not parameters_finite[run]:
                candidates.append((len(next(iter(terms.values()))), run, "a parameter after the update"))
    if not candidates:
        return None
    step, run, what = min(candidates)
    return run, step, what


def _diverged_message(epoch: int, run: int, seed: int, step: int, what: str, completed: int,
                      checkpoint: str | os.PathLike[str] | None) -> str:
    where = f"the end of epoch {completed}" if completed else "their state before training"
    saved = f"; that state was saved to {checkpoint}" if checkpoint is not None else ""
    return (f"run {run} (seed {seed}) stopped at epoch {epoch}, step {step}: {what} is not finite. Every run's "
            f"model and objective were restored to {where} (the last good state); each history holds "
            f"{completed} completed epochs{saved}. Try a smaller learning rate or check the data's scale.")


def _architecture(model: nn.Module) -> list[object]:
    """What runs must share to be stacked: classes, settings and parameter shapes of every module."""
    return [getattr(model, "init_args", None)] + [
        (type(m), m.extra_repr(), tuple((n, tuple(p.shape), p.dtype) for n, p in m.named_parameters(recurse=False)))
        for m in model.modules()]


def _check_arguments(models: list[nn.Module], objectives: list[Objective], seeds: list[int],
                     x: torch.Tensor) -> None:
    """What only fit_batched takes: one model, objective and seed per run, models of one architecture."""
    if not models:
        raise ValueError("models is empty; give at least one model to train")
    if not len(models) == len(objectives) == len(seeds):
        raise ValueError(f"models, objectives and seeds must have one entry per run, got {len(models)} models, "
                         f"{len(objectives)} objectives and {len(seeds)} seeds")
    for what, items, kind in (("models", models, nn.Module), ("objectives", objectives, Objective)):
        seen: dict[int, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                expected = "torch.nn.Module" if kind is nn.Module else "vaelib Objective"
                raise TypeError(f"{what}[{i}] must be a {expected}, got {type(item).__name__}")
            if id(item) in seen:
                raise ValueError(f"{what}[{i}] is the same object as {what}[{seen[id(item)]}]; every run needs its own "
                                 f"(build one per run, or copy.deepcopy it)")
            seen[id(item)] = i
    for i, objective in enumerate(objectives):
        if not objective.batchable:
            raise TypeError(f"objectives[{i}] ({type(objective).__name__}) cannot be trained in a batch (it is not "
                            "batchable); train it with vaelib.fit")
    reference = _architecture(models[0])
    for i, model in enumerate(models[1:], start=1):
        if _architecture(model) != reference:
            raise ValueError(f"models[{i}] differs from models[0] in its class, layers, sizes or settings; batched "
                             "runs must share one architecture (train other architectures in another call)")
    for i, seed in enumerate(seeds):
        _checks.seed(f"seeds[{i}]", seed)
    in_dim = getattr(models[0], "in_dim", None)
    if in_dim is not None and x.shape[1] != in_dim:
        raise ValueError(f"x must have {in_dim} features per row (the models' in_dim), got shape {tuple(x.shape)}")
    check_data_dtype(x, models)
