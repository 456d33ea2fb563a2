"""The batched engine: many independent trainings as one computation.

Why: Ko & Ko's Table 1 needs 20 trainings of a VAE with about 400 weights, and a comparison of
objectives needs a hundred. Trained one after the other by ``vaelib.fit``, every step is some sixty
tiny PyTorch operations whose fixed cost dwarfs their arithmetic. ``fit_batched`` trains R runs of
one architecture together, each with its own objective and seed.

Two paths compute the epochs, and both consume the objectives' one definition
(``vaelib.objectives``):

* the **generic path** (``_generic.py``): the runs' own model and objective modules, stacked along a
  run axis and vectorised with ``torch.func`` (``vmap`` of ``functional_call`` and autograd); any
  model whose ``forward`` returns a ``ModelOutput``, any batchable objective, any device;
* the **C kernel** (``kernel.c``, built once per machine): an accelerator for the common case, a
  ``vaelib.VAE`` MLP on the CPU in float32 trained on objectives of the VAE family, which it reads
  as their ``Form`` (the family's formula with each objective's numbers). tests/test_engine.py
  holds it to the generic path and to ``vaelib.fit``.

``backend="auto"`` takes the kernel where it covers the runs and the generic path otherwise; it
never fails for want of the kernel.

The runs stay independent: each run's gradient comes from its own loss, the optimiser acts
elementwise, and every run draws its data order and noise from generators of its own. They are
also ``vaelib.fit``'s numbers: run r starts from its model's weights and draws what
``fit(..., seed=seeds[r])`` draws (each epoch's order from ``torch.Generator().manual_seed(seed)``,
the reparameterisation noise from a generator seeded with ``seed``), in minibatches of the same
sizes, in the same order. Results agree with ``fit`` up to floating-point rounding (sums in matrix
products are added in another order; the kernel has its own exp and tanh, within 1 and 3 units in
the last place).

Like ``fit``, the engine checkpoints and resumes exactly: ``checkpoint=path`` keeps every run's state
in one training-state file (``vaelib.checkpoint.save_state``: the trainer's stacked tensors, the
optimiser's moments, GECO's averages, each run's data-order and noise generators, the histories and
the setup's fingerprint), and ``resume_from=path`` continues as if never stopped, bit for bit. The
generators are saved as they stand at the end of an epoch, although the next epoch's draws are
already being made in the background: each draw records the states it left behind.
"""
from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks, threads
from vaelib.checkpoint import CheckpointError, check_generator_state, load_state, save_state
from vaelib.engine import _kernel, _layout
from vaelib.engine._build import KernelCacheWarning, KernelUnavailableWarning
from vaelib.engine._generic import GenericTrainer, objective_kind
from vaelib.objectives import ConstrainedObjective, Objective
from vaelib.train import (OPTIMIZERS, History, TrainingDiverged, _device, changed_setup_message,
                          check_checkpoint_paths, check_data_dtype, check_decoder_range, check_lr, data_sha256,
                          fingerprint_differences, settings_fingerprint)

BACKENDS = ("auto", "kernel", "torch")
# torch.optim.Adam's defaults, which vaelib.fit uses; the kernel's update repeats its arithmetic.
ADAM_BETAS = (0.9, 0.999)
# What a training-state file of fit_batched says it holds (vaelib.checkpoint.load_state checks it).
STATE_CONTENT = "fit_batched"

__all__ = ["BACKENDS", "KernelCacheWarning", "KernelUnavailableWarning", "RunDiverged", "fit_batched",
           "kernel_available", "kernel_covers"]


class RunDiverged(TrainingDiverged):
    """A run of ``fit_batched`` became NaN or infinite.

    Every run was put back to the end of the last completed epoch (its model and objective hold
    that state); ``run`` is the index of the failing run, ``history`` its completed epochs and
    ``histories`` those of all runs; ``epoch`` and ``step`` (1-based) and ``term`` say where.
    """

    def __init__(self, message: str, histories: list[History], run: int, *, epoch: int, step: int, term: str):
        super().__init__(message, histories[run], epoch=epoch, step=step, term=term)
        self.run, self.histories = run, histories


def fit_batched(models: Sequence[nn.Module], objectives: Sequence[Objective], x: torch.Tensor, *,
                seeds: Sequence[int], epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                optimizer: str = "adam", progress: bool = True, device: str | torch.device = "cpu",
                backend: str = "auto", checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
                resume_from: str | os.PathLike | None = None, overwrite: bool = False) -> list[History]:
    """Train ``models[r]`` on ``objectives[r]`` with seed ``seeds[r]``, for every r, as one computation.

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
    path. PyTorch runs on ``vaelib.threads.torch_threads()`` threads, the kernel on
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
    _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend, checkpoint,
                     checkpoint_every, resume_from)
    device = _device(device)
    check_checkpoint_paths(checkpoint, resume_from, overwrite, kind="training state")
    x = x.to(device)
    for model in models:
        model.to(device)
    check_decoder_range(models[0], x)
    sizes = _batch_sizes(x.shape[0], batch_size)
    noise_dim = _noise_dim(models[0])
    fingerprint = saved = None
    if checkpoint is not None or resume_from is not None:
        fingerprint = {"runs": [settings_fingerprint(m, o, seed=s) for m, o, s in zip(models, objectives, seeds)],
                       "run": {"batch_size": batch_size, "optimizer": optimizer, "lr": lr, "rows": x.shape[0],
                               "data_sha256": data_sha256(x)}}
    if resume_from is not None:
        saved = _saved_state(Path(resume_from), fingerprint, epochs, device)
        backend = saved["engine"] if backend == "auto" else backend
    with threads.limited():
        trainer = _trainer(backend, models, objectives, x, sizes, optimizer, lr, device)
        engine = "kernel" if isinstance(trainer, KernelTrainer) else "torch"
        histories = [History() for _ in models]
        if saved is not None:
            _restore_trainer(Path(resume_from), trainer, engine, saved)
            histories = [History({name: list(values) for name, values in terms.items()})
                         for terms in saved["histories"]]
        done = len(histories[0])

        def save(generators: dict) -> None:
            save_state(checkpoint, {"engine": engine, "fingerprint": fingerprint, "trainer": trainer.state(),
                                    "generators": generators, "histories": [h.terms for h in histories]},
                       content=STATE_CONTENT)

        with _EpochInputs(seeds, x.shape[0], sizes, noise_dim, x.dtype, device, epochs, done,
                          None if saved is None else saved["generators"]) as inputs:
            boundary = inputs.start  # the generators at the end of the last completed epoch
            bar = tqdm(range(done, epochs), initial=done, total=epochs, desc=f"training {len(models)} runs",
                       disable=not progress, leave=False)
            for epoch in bar:
                order, noise, after = inputs.next()
                trainer.mark()  # the last good state, to go back to if a run diverges
                terms = trainer.epoch(x, order, noise, sizes)
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
    return histories


def kernel_covers(objective: Objective) -> bool:
    """Whether the C kernel can train ``objective``: it is of the VAE family and written as its
    ``Form`` alone (no method of its own that shapes training). Models and devices aside."""
    return _kernel.follows_the_family_formula(objective)


def kernel_available() -> bool:
    """Whether the C kernel could be built here (a C compiler works); ``backend="auto"`` uses it then."""
    return _kernel.load() is not None


def _trainer(backend, models, objectives, x, sizes, optimizer, lr, device):
    """The kernel where it applies (and was not declined), else the generic path."""
    net = _kernel.problem(models, objectives, optimizer, device) if backend != "torch" else "backend='torch'"
    if backend == "kernel" and isinstance(net, str):
        raise ValueError(f"backend='kernel' cannot train these runs: {net}; use backend='torch' or 'auto'")
    if isinstance(net, str):
        return GenericTrainer(models, objectives, OPTIMIZERS[optimizer], lr, device)
    return KernelTrainer(net, models, objectives, x, sizes, optimizer, lr)


def _saved_state(path: Path, fingerprint: dict, epochs: int, device: torch.device) -> dict:
    """The training state in ``path``, after checking everything that does not need the trainer:
    its fingerprint against this call's, its histories, the epochs and every generator state."""
    state = load_state(path, content=STATE_CONTENT)

    def invalid(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid training state of fit_batched: {reason}")

    expected = {"engine", "fingerprint", "trainer", "generators", "histories"}
    if set(state) != expected:
        raise invalid(f"it holds {sorted(state)}, expected {sorted(expected)}")
    differences = fingerprint_differences(state["fingerprint"], fingerprint)
    if differences:
        raise CheckpointError(changed_setup_message("resume_from", path, differences))
    runs = len(fingerprint["runs"])
    if state["engine"] not in ("kernel", "torch"):
        raise invalid(f"its engine is {state['engine']!r}, neither 'kernel' nor 'torch'")
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


def _restore_trainer(path: Path, trainer, engine: str, saved: dict) -> None:
    """Load the saved trainer state, after checking that it has the layout of this trainer's own."""
    if saved["engine"] != engine:
        raise CheckpointError(f"resume_from={str(path)!r} was trained on the {saved['engine']!r} path and would now "
                              f"continue on the {engine!r} path, which rounds differently; resume with "
                              f"backend={saved['engine']!r} (or 'auto')")
    _check_layout(path, saved["trainer"], trainer.state(), "the trainer's state")
    try:
        trainer.restore(saved["trainer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path} does not fit these runs: {' '.join(str(exc).split())}") from None
    optimizer = getattr(trainer, "optimizer", None)
    for group in optimizer.param_groups if optimizer is not None else []:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != parameter.shape:
                    raise CheckpointError(f"{path} does not fit these runs: the optimiser's {key!r} has shape "
                                          f"{tuple(value.shape)}, its parameter {tuple(parameter.shape)}")


def _check_layout(path: Path, saved, template, where: str) -> None:
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
            _check_layout(path, saved[key], template[key], f"{where}[{key!r}]")
    elif isinstance(template, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(template):
            raise mismatch(f"is not a sequence of {len(template)} items")
        for i, (s, t) in enumerate(zip(saved, template)):
            _check_layout(path, s, t, f"{where}[{i}]")
    elif type(saved) is not type(template):
        raise mismatch(f"is a {type(saved).__name__}, expected a {type(template).__name__}")


class KernelTrainer:
    """The C kernel's side of the engine: the flat parameter buffer, Adam's moments, GECO's state."""

    def __init__(self, net: _layout.Net, models: list[nn.Module], objectives: list[Objective], x: torch.Tensor,
                 sizes: list[int], optimizer: str, lr: float):
        self.net, self.objectives, self.features = net, objectives, x.shape[1]
        theta = _layout.gather(models, objectives, net)
        # The parameters and Adam's two moments are rows of one buffer, so that mark() is one copy.
        self.optimised = torch.zeros(3, theta.numel(), dtype=theta.dtype)
        self.optimised[0] = theta
        self.tensors = {"theta": self.optimised[0], "adam_m": self.optimised[1], "adam_v": self.optimised[2],
                        "multiplier": _layout.multiplier_state(objectives)}
        self.call = _kernel.EpochCall(net, objectives, sizes, optimizer, lr, threads.kernel_threads(len(models)))
        self.lr = lr
        self.batch_sizes = torch.tensor(sizes)[:, None]
        # Runs whose objectives share a kind share one combine() call per epoch, on (steps, runs) tensors.
        kinds: dict[tuple, list[int]] = {}
        for r, objective in enumerate(objectives):
            kinds.setdefault(objective_kind(objective), []).append(r)
        self.groups = list(kinds.values())
        # Each group's columns of the kernel's (steps, runs) output: all of them when one group holds every run.
        self.group_columns = [slice(None) if runs == list(range(len(objectives))) else torch.tensor(runs)
                              for runs in self.groups]
        self.steps_done = 0
        self._mark: dict | None = None

    def state(self) -> dict:
        return {"steps_done": self.steps_done, **{name: t.clone() for name, t in self.tensors.items()}}

    def mark(self) -> None:
        """Remember the state (into buffers kept for the purpose: an epoch allocates nothing)."""
        if self._mark is None:
            self._mark = {"optimised": self.optimised.clone(), "multiplier": self.tensors["multiplier"].clone()}
        else:
            self._mark["optimised"].copy_(self.optimised)
            self._mark["multiplier"].copy_(self.tensors["multiplier"])
        self._mark["steps_done"] = self.steps_done

    def rollback(self) -> None:
        """Go back to the state ``mark`` remembered."""
        self.steps_done = self._mark["steps_done"]
        self.optimised.copy_(self._mark["optimised"])
        self.tensors["multiplier"].copy_(self._mark["multiplier"])

    def all_finite(self) -> bool:
        return bool(torch.isfinite(self.tensors["theta"]).all())

    def restore(self, state: dict) -> None:
        self.steps_done = state["steps_done"]
        for name, tensor in self.tensors.items():
            tensor.copy_(state[name])

    def epoch(self, x, order, noise, sizes) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
        """One epoch; per group of runs, each term at every step of every run, (steps, runs)."""
        t = self.tensors
        columns = self.call([t["theta"], t["adam_m"], t["adam_v"]], t["multiplier"], x, order, noise,
                            *_adam_schedule(self.lr, self.steps_done, len(sizes)))
        self.steps_done += len(sizes)
        recon, kl, alpha = columns.unbind(-1)  # _layout.STEP_COLUMNS
        # Each objective names its terms from the kernel's R, KL and alpha with its own combine().
        groups = []
        for runs, columns in zip(self.groups, self.group_columns):
            objective = self.objectives[runs[0]]
            terms = objective.combine(recon[:, columns], kl[:, columns], batch_size=self.batch_sizes,
                                      features=self.features,
                                      alpha=alpha[:, columns] if isinstance(objective, ConstrainedObjective) else None)
            groups.append((runs, terms))
        return groups

    def parameters_finite(self) -> list[bool]:
        runs = len(self.objectives)
        pieces = _layout.unflatten(self.tensors["theta"], self.net, runs)
        return torch.stack([torch.isfinite(p.reshape(runs, -1)).all(1) for p in pieces]).all(0).tolist()

    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        _layout.scatter(self.tensors["theta"], self.tensors["multiplier"], models, objectives, self.net)


def _adam_schedule(lr: float, done: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's per-step scalars for t = done + 1 .. done + steps, -lr / (1 - beta1^t) and
    sqrt(1 - beta2^t), computed with Python floats as torch.optim.Adam computes them, then rounded
    to float32 as its kernels round them. One epoch at a time: memory does not grow with the epochs."""
    beta1, beta2 = ADAM_BETAS
    steps_taken = [float(t) for t in range(done + 1, done + steps + 1)]
    step_size = [-lr / (1 - beta1 ** t) for t in steps_taken]
    bias_correction2_sqrt = [(1 - beta2 ** t) ** 0.5 for t in steps_taken]
    return torch.tensor(step_size, dtype=torch.float32), torch.tensor(bias_correction2_sqrt, dtype=torch.float32)


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    """The minibatch sizes of one epoch, as ``randperm(n).split(batch_size)`` makes them."""
    return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])


def _noise_dim(model: nn.Module) -> int:
    """The width of the standard normal noise a model's forward takes (0: it takes none)."""
    return int(getattr(model, "latent_dim", 0)) if "noise" in inspect.signature(model.forward).parameters else 0


class _EpochInputs:
    """Each epoch's data order (runs, n) and noise (runs, n, noise_dim), drawn as ``vaelib.fit``
    draws them: ``randperm(n)`` from ``Generator().manual_seed(seed)``, then one
    ``randn(b, noise_dim)`` per minibatch of b points from a generator seeded with ``seed``.

    The draws do not depend on the training, so the next epoch's are made in a background thread
    while the current one trains (PyTorch releases the GIL in both), into the other of two buffers.
    The noise is drawn with ``normal_`` into views of a buffer, one per minibatch: the same numbers
    as ``randn`` (which is ``normal_`` on a new tensor) at half the cost per call.

    For checkpoints, each draw also returns the generators' states it leaves (those at the end of
    its epoch: what a resumed run starts from), and ``start`` holds them as given: seeded, or
    ``states`` after ``done`` epochs of a resumed run.
    """

    def __init__(self, seeds: list[int], n: int, sizes: list[int], noise_dim: int, dtype: torch.dtype,
                 device: torch.device, epochs: int, done: int = 0, states: dict | None = None):
        self.order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.noise_rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        for kind, rngs in (("order", self.order_rngs), ("noise", self.noise_rngs)):
            for rng, state in zip(rngs, states[kind] if states is not None else ()):
                rng.set_state(state)
        self.orders = [torch.empty(len(seeds), n, dtype=torch.int64) for _ in range(2)]
        self.noises = [torch.empty(len(seeds), n, noise_dim, dtype=dtype, device=device) for _ in range(2)]
        self.minibatches = [[list(run.split(sizes)) for run in noise] for noise in self.noises]
        self.device, self.drawn, self.epochs, self.noise_dim = device, done, epochs, noise_dim
        self.start = self._states()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelib-engine-draws")
        self.pending = self.pool.submit(self._draw, done % 2) if done < epochs else None

    def _states(self) -> dict[str, list[torch.Tensor]]:
        return {"order": [rng.get_state() for rng in self.order_rngs],
                "noise": [rng.get_state() for rng in self.noise_rngs]}

    def _draw(self, buffer: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        order, noise = self.orders[buffer], self.noises[buffer]
        for r, (order_rng, noise_rng) in enumerate(zip(self.order_rngs, self.noise_rngs)):
            torch.randperm(order.shape[1], generator=order_rng, out=order[r])
            if self.noise_dim:
                for minibatch in self.minibatches[buffer][r]:
                    minibatch.normal_(generator=noise_rng)
        return order.to(self.device), noise, self._states()

    def next(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The next epoch's order and noise, and the generators' states after drawing them."""
        ready = self.pending.result()
        self.drawn += 1
        self.pending = self.pool.submit(self._draw, self.drawn % 2) if self.drawn < self.epochs else None
        return ready

    def __enter__(self) -> _EpochInputs:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _epoch_means(groups: list[tuple[list[int], dict[str, torch.Tensor]]], sizes: list[int]) -> list[list[list[float]]]:
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


def _first_non_finite(groups: list[tuple[list[int], dict[str, torch.Tensor]]], trainer) -> tuple[int, int, str] | None:
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


def _diverged_message(epoch: int, run: int, seed: int, step: int, what: str, completed: int, checkpoint) -> str:
    where = f"the end of epoch {completed}" if completed else "their state before training"
    saved = f"; that state was saved to {checkpoint}" if checkpoint is not None else ""
    return (f"run {run} (seed {seed}) stopped at epoch {epoch}, step {step}: {what} is not finite. Every run's "
            f"model and objective were restored to {where} (the last good state); each history holds "
            f"{completed} completed epochs{saved}. Try a smaller learning rate or check the data's scale.")


def _architecture(model: nn.Module) -> list:
    """What runs must share to be stacked: classes, settings and parameter shapes of every module."""
    return [getattr(model, "init_args", None)] + [
        (type(m), m.extra_repr(), tuple((n, tuple(p.shape), p.dtype) for n, p in m.named_parameters(recurse=False)))
        for m in model.modules()]


def _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend, checkpoint,
                     checkpoint_every, resume_from) -> None:
    if not models:
        raise ValueError("models is empty; give at least one model to train")
    if not len(models) == len(objectives) == len(seeds):
        raise ValueError(f"models, objectives and seeds must have one entry per run, got {len(models)} models, "
                         f"{len(objectives)} objectives and {len(seeds)} seeds")
    for what, items, kind in (("models", models, nn.Module), ("objectives", objectives, Objective)):
        seen: dict[int, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise TypeError(f"{what}[{i}] must be a {'torch.nn.Module' if kind is nn.Module else 'vaelib Objective'}"
                                f", got {type(item).__name__}")
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
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_float("lr", lr)
    check_lr(lr, list(models[0].parameters()))
    _checks.one_of("optimizer", optimizer, OPTIMIZERS)
    _checks.one_of("backend", backend, BACKENDS)
    _checks.positive_int("checkpoint_every", checkpoint_every)
    for name, path in (("checkpoint", checkpoint), ("resume_from", resume_from)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be a file path (str or os.PathLike) or None, got {type(path).__name__}")
