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
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks, threads
from vaelib.engine import _kernel, _layout
from vaelib.engine._build import KernelCacheWarning, KernelUnavailableWarning
from vaelib.engine._generic import GenericTrainer
from vaelib.objectives import ConstrainedObjective, Objective
from vaelib.train import OPTIMIZERS, History, TrainingDiverged, _device

BACKENDS = ("auto", "kernel", "torch")
# torch.optim.Adam's defaults, which vaelib.fit uses; the kernel's update repeats its arithmetic.
ADAM_BETAS = (0.9, 0.999)

__all__ = ["BACKENDS", "KernelCacheWarning", "KernelUnavailableWarning", "RunDiverged", "fit_batched",
           "kernel_available"]


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
                backend: str = "auto") -> list[History]:
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

    Raises ``RunDiverged`` (a ``TrainingDiverged``) when a run's loss or parameters stop being finite.
    """
    models, objectives, seeds = list(models), list(objectives), list(seeds)
    x = _checks.data_matrix("x", x)
    _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend)
    device = _device(device)
    x = x.to(device)
    sizes = _batch_sizes(x.shape[0], batch_size)
    noise_dim = _noise_dim(models[0])
    with threads.limited():
        trainer = _trainer(backend, models, objectives, x, sizes, epochs, optimizer, lr, device)
        histories = [History() for _ in models]
        with _EpochInputs(seeds, x.shape[0], sizes, noise_dim, x.dtype, device, epochs) as inputs:
            bar = tqdm(range(epochs), desc=f"training {len(models)} runs", disable=not progress, leave=False)
            for epoch in bar:
                order, noise = inputs.next()
                last_good = trainer.state()
                terms = trainer.epoch(x, order, noise, sizes)
                bad = _first_non_finite(terms, trainer.parameters_finite())
                if bad is not None:
                    trainer.restore(last_good)
                    trainer.write_back(models, objectives)
                    run, step, term = bad
                    raise RunDiverged(_diverged_message(epoch + 1, run, seeds[run], step, term, len(histories[run])),
                                      histories, run, epoch=epoch + 1, step=step, term=term)
                for history, run_terms in zip(histories, terms):
                    history.append(_epoch_means(run_terms, sizes))
                bar.set_postfix(loss=f"{sum(h['loss'][-1] for h in histories) / len(histories):.4g}")
        trainer.write_back(models, objectives)
    return histories


def kernel_available() -> bool:
    """Whether the C kernel could be built here (a C compiler works); ``backend="auto"`` uses it then."""
    return _kernel.load() is not None


def _trainer(backend, models, objectives, x, sizes, epochs, optimizer, lr, device):
    """The kernel where it applies (and was not declined), else the generic path."""
    net = _kernel.problem(models, objectives, optimizer, device) if backend != "torch" else "backend='torch'"
    if backend == "kernel" and isinstance(net, str):
        raise ValueError(f"backend='kernel' cannot train these runs: {net}; use backend='torch' or 'auto'")
    if isinstance(net, str):
        return GenericTrainer(models, objectives, OPTIMIZERS[optimizer], lr, device)
    return KernelTrainer(net, models, objectives, x, sizes, epochs, optimizer, lr)


class KernelTrainer:
    """The C kernel's side of the engine: the flat parameter buffer, Adam's moments, GECO's state."""

    def __init__(self, net: _layout.Net, models: list[nn.Module], objectives: list[Objective], x: torch.Tensor,
                 sizes: list[int], epochs: int, optimizer: str, lr: float):
        self.net, self.objectives, self.features = net, objectives, x.shape[1]
        theta = _layout.gather(models, objectives, net)
        self.tensors = {"theta": theta, "adam_m": torch.zeros_like(theta), "adam_v": torch.zeros_like(theta),
                        "multiplier": _layout.multiplier_state(objectives)}
        self.call = _kernel.EpochCall(net, objectives, sizes, optimizer, lr, threads.kernel_threads(len(models)))
        self.step_size, self.bias_correction2_sqrt = _adam_schedule(lr, epochs * len(sizes))
        self.batch_sizes = torch.tensor(sizes)
        self.steps_done = 0

    def state(self) -> dict:
        return {"steps_done": self.steps_done, **{name: t.clone() for name, t in self.tensors.items()}}

    def restore(self, state: dict) -> None:
        self.steps_done = state["steps_done"]
        for name, tensor in self.tensors.items():
            tensor.copy_(state[name])

    def epoch(self, x, order, noise, sizes) -> list[dict[str, torch.Tensor]]:
        steps = slice(self.steps_done, self.steps_done + len(sizes))
        t = self.tensors
        columns = self.call([t["theta"], t["adam_m"], t["adam_v"]], t["multiplier"], x, order, noise,
                            self.step_size[steps], self.bias_correction2_sqrt[steps])
        self.steps_done += len(sizes)
        recon, kl, alpha = (columns[..., _layout.STEP_COLUMNS.index(name)] for name in _layout.STEP_COLUMNS)
        # Each objective names its terms from the kernel's R, KL and alpha with its own combine().
        return [objective.combine(recon[:, r], kl[:, r], batch_size=self.batch_sizes, features=self.features,
                                  alpha=alpha[:, r] if isinstance(objective, ConstrainedObjective) else None)
                for r, objective in enumerate(self.objectives)]

    def parameters_finite(self) -> list[bool]:
        runs = len(self.objectives)
        pieces = _layout.unflatten(self.tensors["theta"], self.net, runs)
        return torch.stack([torch.isfinite(p.reshape(runs, -1)).all(1) for p in pieces]).all(0).tolist()

    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        _layout.scatter(self.tensors["theta"], self.tensors["multiplier"], models, objectives, self.net)


def _adam_schedule(lr: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's per-step scalars for t = 1..steps, -lr / (1 - beta1^t) and sqrt(1 - beta2^t),
    computed in double precision as torch.optim.Adam does, then rounded to float32 as its kernels
    round them."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    step_size = -lr / (1 - ADAM_BETAS[0] ** t)
    bias_correction2_sqrt = (1 - ADAM_BETAS[1] ** t) ** 0.5
    return step_size.float(), bias_correction2_sqrt.float()


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
    """

    def __init__(self, seeds: list[int], n: int, sizes: list[int], noise_dim: int, dtype: torch.dtype,
                 device: torch.device, epochs: int):
        self.order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.noise_rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.orders = [torch.empty(len(seeds), n, dtype=torch.int64) for _ in range(2)]
        self.noises = [torch.empty(len(seeds), n, noise_dim, dtype=dtype, device=device) for _ in range(2)]
        self.minibatches = [[list(run.split(sizes)) for run in noise] for noise in self.noises]
        self.device, self.drawn, self.epochs, self.noise_dim = device, 0, epochs, noise_dim
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelib-engine-draws")
        self.pending = self.pool.submit(self._draw, 0)

    def _draw(self, buffer: int) -> tuple[torch.Tensor, torch.Tensor]:
        order, noise = self.orders[buffer], self.noises[buffer]
        for r, (order_rng, noise_rng) in enumerate(zip(self.order_rngs, self.noise_rngs)):
            torch.randperm(order.shape[1], generator=order_rng, out=order[r])
            if self.noise_dim:
                for minibatch in self.minibatches[buffer][r]:
                    minibatch.normal_(generator=noise_rng)
        return order.to(self.device), noise

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        ready = self.pending.result()
        self.drawn += 1
        self.pending = self.pool.submit(self._draw, self.drawn % 2) if self.drawn < self.epochs else None
        return ready

    def __enter__(self) -> _EpochInputs:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _epoch_means(terms: dict[str, torch.Tensor], sizes: list[int]) -> dict[str, float]:
    """A run's epoch means, summed step by step in double precision as vaelib.fit sums them."""
    weights = torch.tensor(sizes, dtype=torch.float64)
    return {name: (values.detach().cpu().double() * weights).cumsum(0)[-1].item() / sum(sizes)
            for name, values in terms.items()}


def _first_non_finite(terms: list[dict[str, torch.Tensor]], parameters_finite: list[bool]) -> tuple[int, int, str] | None:
    """(run, step, what) for the earliest step at which a run's terms or parameters stop being finite."""
    candidates = []
    for run, (run_terms, finite) in enumerate(zip(terms, parameters_finite)):
        steps = len(next(iter(run_terms.values())))
        bad_steps = [(int((~torch.isfinite(v)).nonzero()[0]), name) for name, v in run_terms.items()
                     if not bool(torch.isfinite(v).all())]
        if bad_steps:
            step, name = min(bad_steps, key=lambda s: (s[0], list(run_terms).index(s[1])))
            candidates.append((step + 1, run, f"the term {name!r}"))
        elif not finite:
            candidates.append((steps, run, "a parameter after the update"))
    if not candidates:
        return None
    step, run, what = min(candidates)
    return run, step, what


def _diverged_message(epoch: int, run: int, seed: int, step: int, what: str, completed: int) -> str:
    where = f"the end of epoch {completed}" if completed else "their state before training"
    return (f"run {run} (seed {seed}) stopped at epoch {epoch}, step {step}: {what} is not finite. Every run's "
            f"model and objective were restored to {where} (the last good state); each history holds "
            f"{completed} completed epochs. Try a smaller learning rate or check the data's scale.")


def _architecture(model: nn.Module) -> list:
    """What runs must share to be stacked: classes, settings and parameter shapes of every module."""
    return [getattr(model, "init_args", None)] + [
        (type(m), m.extra_repr(), tuple((n, tuple(p.shape), p.dtype) for n, p in m.named_parameters(recurse=False)))
        for m in model.modules()]


def _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend) -> None:
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
    dtype = next(models[0].parameters()).dtype
    if x.dtype != dtype:
        raise TypeError(f"x has dtype {x.dtype} but the models' parameters are {dtype}; convert with x.to({dtype})")
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_float("lr", lr)
    _checks.one_of("optimizer", optimizer, OPTIMIZERS)
    _checks.one_of("backend", backend, BACKENDS)
