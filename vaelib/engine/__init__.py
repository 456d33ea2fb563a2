"""The batched engine: many independent VAE trainings as one computation.

Why: Ko & Ko's Table 1 needs 20 trainings of a VAE with about 400 weights. Trained one after the
other by ``vaelib.fit``, every step is some sixty tiny PyTorch operations whose fixed cost dwarfs
their arithmetic. ``fit_batched`` trains R runs of one VAE architecture together: every parameter
is stacked along a leading run axis (a weight of shape (R, in, out)) in one flat buffer, the
gradients are written out by hand, and the optimiser updates every run at once. Two backends
compute the epochs: a C kernel (``kernel.c``, built once per machine) that keeps each run's work
in cache and trains the runs on all cores, and the same computation in PyTorch operations
(``_stacked.py``) for other devices, dtypes and the Bernoulli decoder.

The runs stay independent. Each run's gradient is computed from its own activations and its own
loss only, Adam acts elementwise, and every run draws its data order and its sampling noise from
generators of its own, so run r's numbers do not depend on which runs share the computation.

They are also ``vaelib.fit``'s numbers. Given the models (each built after
``seed_everything(seed)``), the objectives and the seeds, run r starts from its model's weights
and draws what ``fit(..., seed=seeds[r])`` draws: each epoch's data order from
``torch.Generator().manual_seed(seed)`` and the reparameterisation noise from a generator seeded
with ``seed`` (``fit`` seeds the global one, which gives the same stream), in minibatches of the
same sizes, in the same order. Parameters, alpha and histories then agree with ``fit`` up to
floating-point rounding: sums inside matrix products and gradients are added in another order,
and the kernel evaluates exp and tanh with its own polynomials (within 1 and 3 units in the last
place). tests/test_engine.py bounds the difference.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from tqdm.auto import tqdm

from vaelib import _checks
from vaelib.engine import _kernel
from vaelib.engine._stacked import (COLUMNS, Net, Runs, adam_schedule, architecture, gather_parameters, run_settings,
                                    scatter_parameters, torch_epoch, unflatten)
from vaelib.models.vae import VAE
from vaelib.objectives import ELBO, KoLagrangian
from vaelib.train import OPTIMIZERS, History, TrainingDiverged, _device

BACKENDS = ("auto", "kernel", "torch")
# Each objective logs the terms its forward() returns, under the same names, so that a run's
# History has the terms vaelib.fit would log.
LOGGED_TERMS = {ELBO: COLUMNS[:3], KoLagrangian: COLUMNS}

__all__ = ["BACKENDS", "RunDiverged", "fit_batched", "kernel_available"]


class RunDiverged(TrainingDiverged):
    """A run of ``fit_batched`` became NaN or infinite.

    Every run was put back to the end of the last completed epoch (its model and objective hold
    that state); ``run`` is the index of the failing run, ``history`` its completed epochs and
    ``histories`` those of all runs; ``epoch`` and ``step`` (1-based) and ``term`` say where.
    """

    def __init__(self, message: str, histories: list[History], run: int, *, epoch: int, step: int, term: str):
        super().__init__(message, histories[run], epoch=epoch, step=step, term=term)
        self.run, self.histories = run, histories


def fit_batched(models: Sequence[VAE], objectives: Sequence[ELBO | KoLagrangian], x: torch.Tensor, *,
                seeds: Sequence[int], epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                optimizer: str = "adam", progress: bool = True, device: str | torch.device = "cpu",
                backend: str = "auto") -> list[History]:
    """Train ``models[r]`` on ``objectives[r]`` with seed ``seeds[r]``, for every r, as one computation.

    Each run is what ``vaelib.fit(models[r], objectives[r], x, seed=seeds[r], ...)`` with the same
    settings would train (see the module's docstring for how far the numbers agree), but all runs
    advance together, which is many times faster for small networks. The models must be
    ``vaelib.VAE`` instances of one architecture (any hidden sizes and activation, either decoder);
    each objective an ``ELBO`` or a ``KoLagrangian`` (any alpha rule and KL reduction), mixed
    freely. Like ``fit``, it trains them in place: afterwards the models (moved to ``device``) hold
    the trained weights and each ``KoLagrangian`` its trained alpha. Returns one ``History`` per run.

    ``backend``: ``"kernel"``, the C kernel (CPU, float32, Gaussian decoder; built with the system's
    C compiler on first use, then cached); ``"torch"``, PyTorch operations (any device, dtype and
    decoder); ``"auto"`` (default), the kernel where it applies and builds, else ``"torch"``. The
    kernel uses ``torch.get_num_threads()`` threads.

    Raises ``RunDiverged`` (a ``TrainingDiverged``) when a run's loss or parameters stop being finite.
    """
    models, objectives, seeds = list(models), list(objectives), list(seeds)
    x = _checks.data_matrix("x", x)
    _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend)
    device = _device(device)
    net = architecture(models, objectives, optimizer, lr)
    theta = gather_parameters(models, objectives, net).to(device)
    state = [theta, torch.zeros_like(theta), torch.zeros_like(theta)]  # parameters, Adam's two moments
    runs = run_settings(objectives, net, theta.dtype, device)
    x = x.to(device)
    sizes = _batch_sizes(x.shape[0], batch_size)
    train_epoch = _epoch_trainer(backend, net, runs, state, x, sizes, adam_schedule(lr, epochs * len(sizes),
                                                                                    theta.dtype, device))
    histories = [History() for _ in models]
    with _EpochInputs(seeds, x.shape[0], sizes, net.latent, theta.dtype, device, epochs) as inputs:
        bar = tqdm(range(epochs), desc=f"training {len(models)} runs", disable=not progress, leave=False)
        for epoch in bar:
            order, eps = inputs.next()
            last_good = state[0].clone()
            terms = train_epoch(order, eps, slice(epoch * len(sizes), (epoch + 1) * len(sizes)))
            bad = _first_non_finite(terms, state[0], net)
            if bad is not None:
                scatter_parameters(last_good, models, objectives, net)
                run, step, term = bad
                raise RunDiverged(_diverged_message(epoch + 1, run, seeds[run], step, term, len(histories[run])),
                                  histories, run, epoch=epoch + 1, step=step, term=term)
            for history, objective, means in zip(histories, objectives, _epoch_means(terms, sizes)):
                history.append({name: means[COLUMNS.index(name)] for name in LOGGED_TERMS[type(objective)]})
            bar.set_postfix(loss=f"{sum(h['loss'][-1] for h in histories) / len(histories):.4g}")
    scatter_parameters(state[0], models, objectives, net)
    return histories


def kernel_available() -> bool:
    """Whether the C kernel could be built here (a C compiler works); ``backend="auto"`` uses it then."""
    return _kernel.load() is not None


def _epoch_trainer(backend: str, net: Net, runs: Runs, state: list[torch.Tensor], x: torch.Tensor, sizes: list[int],
                   schedule: tuple[torch.Tensor, torch.Tensor]):
    """``train(order, eps, steps) -> terms``: one epoch of every run with the kernel, or with
    PyTorch where the kernel does not apply; updates ``state``; ``steps`` slices Adam's schedule."""
    step_size, bias_correction2_sqrt = schedule
    problem = _kernel.problem(net, x.dtype, x.device) if backend != "torch" else "backend='torch' was asked for"
    if backend == "kernel" and problem:
        raise ValueError(f"backend='kernel' cannot train these runs: {problem}; use backend='torch' or 'auto'")
    if problem is None:
        kernel_epoch = _kernel.EpochCall(net, runs, len(runs.beta), sizes, threads=torch.get_num_threads())
        return lambda order, eps, steps: kernel_epoch(state, x, order, eps, step_size[steps],
                                                      bias_correction2_sqrt[steps])
    return lambda order, eps, steps: torch_epoch(net, runs, state, x, order, eps, sizes, step_size[steps],
                                                 bias_correction2_sqrt[steps])


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    """The minibatch sizes of one epoch, as ``randperm(n).split(batch_size)`` makes them."""
    return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])


class _EpochInputs:
    """Each epoch's data order (runs, n) and reparameterisation noise (runs, n, latent), drawn as
    ``vaelib.fit`` draws them: ``randperm(n)`` from ``Generator().manual_seed(seed)``, then one
    ``randn(b, latent)`` per minibatch of b points from a generator seeded with ``seed``.

    The draws do not depend on the training, so the next epoch's are made in a background thread
    while the current one trains (PyTorch releases the GIL in both), into the other of two buffers.
    The noise is drawn with ``normal_`` into views of a buffer, one per minibatch: the same numbers
    as ``randn`` (which is ``normal_`` on a new tensor) at half the cost per call.
    """

    def __init__(self, seeds: list[int], n: int, sizes: list[int], latent: int, dtype: torch.dtype,
                 device: torch.device, epochs: int):
        self.order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.noise_rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.orders = [torch.empty(len(seeds), n, dtype=torch.int64) for _ in range(2)]
        self.noises = [torch.empty(len(seeds), n, latent, dtype=dtype, device=device) for _ in range(2)]
        self.minibatches = [[list(run.split(sizes)) for run in noise] for noise in self.noises]
        self.device, self.drawn, self.epochs = device, 0, epochs
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelib-engine-draws")
        self.pending = self.pool.submit(self._draw, 0)

    def _draw(self, buffer: int) -> tuple[torch.Tensor, torch.Tensor]:
        order, noise = self.orders[buffer], self.noises[buffer]
        for r, (order_rng, noise_rng) in enumerate(zip(self.order_rngs, self.noise_rngs)):
            torch.randperm(order.shape[1], generator=order_rng, out=order[r])
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


def _epoch_means(terms: torch.Tensor, sizes: list[int]) -> list[list[float]]:
    """Each run's epoch means, summed step by step in double precision as vaelib.fit sums them."""
    weights = torch.tensor(sizes, dtype=torch.float64)[:, None, None]
    totals = (terms.cpu().double() * weights).cumsum(0)[-1]
    return (totals / sum(sizes)).tolist()


def _first_non_finite(terms: torch.Tensor, theta: torch.Tensor, net: Net) -> tuple[int, int, str] | None:
    """(run, step, what) for the first run whose terms or parameters are not finite, else None."""
    if bool(torch.isfinite(terms).all()) and bool(torch.isfinite(theta).all()):
        return None
    n_steps, n_runs = terms.shape[:2]
    finite_terms = torch.isfinite(terms).all(-1).cpu()  # (steps, runs)
    finite_params = torch.stack([torch.isfinite(p.reshape(n_runs, -1)).all(1)
                                 for p in unflatten(theta, net, n_runs)]).all(0).cpu()
    candidates = []
    for run in range(n_runs):
        if not bool(finite_terms[:, run].all()):
            step = int((~finite_terms[:, run]).int().argmax())
            column = int((~torch.isfinite(terms[step, run])).int().argmax())
            candidates.append((step + 1, run, f"the term {COLUMNS[column]!r}"))
        elif not bool(finite_params[run]):
            candidates.append((n_steps, run, "a parameter after the update"))
    step, run, what = min(candidates)
    return run, step, what


def _diverged_message(epoch: int, run: int, seed: int, step: int, what: str, completed: int) -> str:
    where = f"the end of epoch {completed}" if completed else "their state before training"
    return (f"run {run} (seed {seed}) stopped at epoch {epoch}, step {step}: {what} is not finite. Every run's "
            f"model and objective were restored to {where} (the last good state); each history holds "
            f"{completed} completed epochs. Try a smaller learning rate or check the data's scale.")


def _check_arguments(models, objectives, seeds, x, epochs, batch_size, lr, optimizer, backend) -> None:
    if not models:
        raise ValueError("models is empty; give at least one vaelib.VAE to train")
    if not len(models) == len(objectives) == len(seeds):
        raise ValueError(f"models, objectives and seeds must have one entry per run, got {len(models)} models, "
                         f"{len(objectives)} objectives and {len(seeds)} seeds")
    for i, model in enumerate(models):
        if type(model) is not VAE:
            raise TypeError(f"models[{i}] must be a vaelib.VAE, got {type(model).__name__}; the batched engine "
                            "trains VAEs only (use vaelib.fit for other models)")
    for i, objective in enumerate(objectives):
        if type(objective) not in LOGGED_TERMS:
            raise TypeError(f"objectives[{i}] must be a vaelib.ELBO or vaelib.KoLagrangian, got "
                            f"{type(objective).__name__} (use vaelib.fit for other objectives)")
    for i, seed in enumerate(seeds):
        _checks.seed(f"seeds[{i}]", seed)
    if x.shape[1] != models[0].in_dim:
        raise ValueError(f"x must have {models[0].in_dim} features per row (the models' in_dim), got shape "
                         f"{tuple(x.shape)}")
    dtype = models[0].encoder[0].weight.dtype
    if x.dtype != dtype:
        raise TypeError(f"x has dtype {x.dtype} but the models' parameters are {dtype}; convert with x.to({dtype})")
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_float("lr", lr)
    _checks.one_of("optimizer", optimizer, OPTIMIZERS)
    _checks.one_of("backend", backend, BACKENDS)
