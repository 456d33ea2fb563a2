"""The engine's generic path: the runs' own model and objective code, many runs per operation.

Runs are grouped by their objective's kind (class and settings that are not tensors: an ELBO with
beta = 4 and one with beta = 1 are two groups, because beta is a Python number the objective's code
reads). Within a group every tensor of the models and objectives is stacked along a leading run
axis, and each step computes every run's loss, terms and gradients with the modules' own ``forward``
code and autograd: nothing about a model or an objective is written a second time here. Two forms
compute a group's step:

* **stacked** (``_stacked.py``), the fast one: the model's ``forward`` runs once on the rows of all
  the group's runs, one run after another, with its parameterised layers replaced by stacked
  twins; the objective scores the (runs, n, ...) output, giving every term per run; one backward
  pass of the terms' sum gives every run's own gradient (the runs share no tensor);
* **vmap**, for any other model: ``vmap(grad_and_value(functional_call(...)))`` over the runs.

A group takes the stacked form when its model is built from the layers ``_stacked.py`` knows and a
probe agrees: before training, the stacked forward pass and gradients on one minibatch are compared
with each run's own (a few runs, by ``model(x)`` and autograd); a model whose code mixes the rows of
different points, or draws random numbers it does not declare, fails the probe and takes ``vmap``.

Every trained tensor of every run is a view into one flat buffer, its gradient a view into another,
and one ``FlatOptimizer`` (``_optimizer.py``: ``torch.optim.Adam``'s arithmetic) updates them all;
the objectives' own ``before_step``/``after_step`` hooks then run once on each group's stacked state
(they act elementwise).

This is the reference that the C kernel is tested against, and the path for whatever the kernel
does not cover (other models, objectives, devices, dtypes).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from vaelib.engine._inputs import random_draws
from vaelib.engine._optimizer import _GROUP_SETTINGS, FlatOptimizer
from vaelib.engine._stacked import Layout, check_stackable, layouts, stacked_twin
from vaelib.engine._trainer import EpochTerms
from vaelib.models.base import ModelOutput
from vaelib.objectives import Objective, objective_kind
from vaelib.runs import OPTIMIZERS

LOG = logging.getLogger("vaelib.engine")
# The probe compares at most this many runs of a group with their own forward and backward passes.
PROBED_RUNS = 3


def _install(module: nn.Module, name: str, value: torch.Tensor, parameter: bool) -> None:
    """Replace the parameter or buffer ``name`` (dotted) of ``module`` by ``value``."""
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    if parameter:
        assert isinstance(value, nn.Parameter)
        delattr(module, leaf)
        module.register_parameter(leaf, value)
    else:
        module.register_buffer(leaf, value)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class _Group:
    """The runs of one objective kind: their models' and objectives' tensors, stacked, and how a step
    computes their terms and gradients (stacked, or by vmap)."""

    def __init__(self, runs: list[int], models: list[nn.Module], objectives: list[Objective],
                 device: torch.device):
        self.runs = runs
        self.template = models[0]
        parameters = [dict(m.named_parameters()) for m in models]  # a tied parameter once, by its first name
        self.model_values = {name: _stack([p[name] for p in parameters]).to(device) for name in parameters[0]}
        self.trained_names = [name for name, p in parameters[0].items() if p.requires_grad]
        self.model_frozen = {name: value for name, value in self.model_values.items()
                             if name not in self.trained_names}
        buffers = [dict(m.named_buffers()) for m in models]
        self.model_buffers = {name: _stack([b[name] for b in buffers]).to(device) for name in buffers[0]}
        self.objective = copy.deepcopy(objectives[0]).to(device)
        self.objective_trained_names = [name for name, _ in objectives[0].trainer_parameters()]
        objective_parameters = [dict(o.named_parameters()) for o in objectives]
        self.objective_values = {name: _stack([p[name] for p in objective_parameters]).to(device)
                                 for name in objective_parameters[0]}
        for name, value in self.objective_values.items():
            if name not in self.objective_trained_names:
                _install(self.objective, name, nn.Parameter(value, requires_grad=False), parameter=True)
        objective_buffers = [dict(o.named_buffers()) for o in objectives]
        for name in objective_buffers[0]:
            _install(self.objective, name, _stack([b[name] for b in objective_buffers]).to(device), parameter=False)
        self.draws = random_draws(models[0])
        unsupported = check_stackable(models[0])
        self.stacked_reason = None if unsupported is None else unsupported.reason
        self.stacked = self.stacked_reason is None
        held = layouts(models[0], len(runs)) if self.stacked else {}
        self.layouts = [held.get(name, Layout.plain(tuple(self.model_values[name].shape))) for name in self.trained_names]
        self.layouts += [Layout.plain(tuple(self.objective_values[name].shape)) for name in self.objective_trained_names]

    def trained_values(self) -> list[tuple[torch.Tensor, Layout]]:
        """The trained tensors' starting values (R, *shape) and how each is held, in the optimiser's
        order: the model's, the objective's."""
        values = [self.model_values[name] for name in self.trained_names]
        values += [self.objective_values[name] for name in self.objective_trained_names]
        return list(zip(values, self.layouts))

    def bind(self, leaves: list[torch.Tensor], canonical: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """Train the tensors held in the trainer's flat buffer, in ``trained_values``' order: as
        ``leaves`` (their computing layout, each with its gradient set), ``canonical`` (views in the
        parameters' own shapes) and ``grads`` (the gradients' views in those shapes). The objective's
        are installed as its parameters."""
        count = len(self.trained_names)
        self.leaves = dict(zip(self.trained_names, leaves[:count]))
        self.trained = dict(zip(self.trained_names, canonical[:count]))
        self.grads = dict(zip(self.trained_names, grads[:count]))
        self.objective_trained: dict[str, nn.Parameter] = {}
        for name, leaf in zip(self.objective_trained_names, leaves[count:]):
            gradient = cast(torch.Tensor, leaf.grad)  # set by the trainer before binding
            parameter = nn.Parameter(leaf.detach(), requires_grad=True)  # an alias of the leaf's memory
            parameter.grad = gradient
            _install(self.objective, name, parameter, parameter=True)
            self.objective_trained[name] = parameter
            self.grads[f"objective {name}"] = gradient
        self._build()

    def _build(self) -> None:
        self.twin: nn.Module | None = None
        self.vmapped: Callable[..., Any] | None = None
        if self.stacked:
            held = dict(zip(self.trained_names, self.layouts))
            held.update({name: Layout.plain(tuple(value.shape)) for name, value in self.model_frozen.items()})
            self.twin = stacked_twin(self.template, {**self.leaves, **self.model_frozen}, held, len(self.runs))
        else:
            self.vmapped = self._vmapped_step()

    def use_vmap(self, reason: str) -> None:
        """Compute this group by vmap from now on (the stacked form does not agree, ``reason``)."""
        self.stacked, self.stacked_reason = False, reason
        self._build()

    def _vmapped_step(self) -> Callable[..., Any]:
        template = copy.deepcopy(self.template)  # a real copy: tied parameters stay tied (functional_call ties them)
        template.train()  # as vaelib.fit trains: a denoising model corrupts its input only in training mode
        objective = self.objective

        def run_loss(model_trained: dict[str, torch.Tensor], objective_trained: dict[str, torch.Tensor],
                     model_frozen: dict[str, torch.Tensor], objective_state: dict[str, torch.Tensor], x: torch.Tensor,
                     draws: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            out = functional_call(template, {**model_trained, **model_frozen}, (x,), draws)
            terms: dict[str, torch.Tensor] = functional_call(objective, {**objective_trained, **objective_state},
                                                             (x, out))
            return terms["loss"], terms

        return vmap(grad_and_value(run_loss, argnums=(0, 1), has_aux=True), randomness="error")

    def objective_state(self) -> dict[str, torch.Tensor]:
        """The objective's stacked tensors that the optimiser does not train (buffers, frozen alpha)."""
        state = {name: p.detach() for name, p in self.objective.named_parameters() if name not in self.objective_trained}
        return {**state, **dict(self.objective.named_buffers())}

    def terms(self, xb: torch.Tensor, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every run's terms for its minibatch ``xb`` (runs, b, d) and draws (runs, b, width), with
        the gradients of the loss added to the trained tensors' gradients."""
        if self.vmapped is not None:
            (model_grads, objective_grads), (_, vmapped_terms) = self.vmapped(
                self.trained, self.objective_trained, self.model_frozen, self.objective_state(), xb, draws)
            with torch.no_grad():
                for name, gradient in model_grads.items():
                    self.grads[name].add_(gradient)
                for name in self.objective_trained:
                    self.grads[f"objective {name}"].add_(objective_grads[name])
            return cast(dict[str, torch.Tensor], vmapped_terms)
        assert self.twin is not None
        runs, b = xb.shape[0], xb.shape[1]
        rows = xb.reshape(runs * b, xb.shape[2])
        out = self.twin(rows, **{name: d.reshape(runs * b, d.shape[2]) for name, d in draws.items()})
        terms: dict[str, torch.Tensor] = self.objective(xb, _by_run(out, runs))
        loss = terms["loss"]
        if loss.shape != (runs,):
            raise _Disagrees(f"the objective's loss has shape {tuple(loss.shape)} for {runs} runs, not one value per run")
        loss.backward(torch.ones_like(loss))
        return terms

    @torch.no_grad()
    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        stacked_model = {**self.trained, **self.model_frozen, **self.model_buffers}
        stacked_objective = {**dict(self.objective.named_parameters()), **dict(self.objective.named_buffers())}
        for j, r in enumerate(self.runs):
            for name, target in (*models[r].named_parameters(), *models[r].named_buffers()):
                target.copy_(stacked_model[name][j])
            for name, target in (*objectives[r].named_parameters(), *objectives[r].named_buffers()):
                target.copy_(stacked_objective[name][j])


class _Disagrees(Exception):
    """The stacked form does not compute what each run's own modules compute."""


def _by_run(out: ModelOutput, runs: int) -> ModelOutput:
    """A model output over the rows of all runs, (runs·b, ...), as (runs, b, ...) per field."""
    fields = {}
    for field in dataclasses.fields(out):
        value = getattr(out, field.name)
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] % runs:
                raise _Disagrees(f"its output {field.name!r} has shape {tuple(value.shape)}, not one row per point")
            value = value.reshape(runs, value.shape[0] // runs, *value.shape[1:])
        fields[field.name] = value
    return type(out)(**fields)


def _probe_draws(group: _Group, runs: int, b: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    draws = {}
    for keyword, distribution, width in group.draws:
        values = torch.randn(runs, b, width, generator=generator) if distribution == "normal" else \
            torch.rand(runs, b, width, generator=generator)
        draws[keyword] = values.to(like)
    return draws


def _agree(stacked: torch.Tensor, own: torch.Tensor) -> bool:
    """Equal up to rounding: a model that mixes the runs' rows differs by far more."""
    if stacked.shape != own.shape:
        return False
    scale = float(own.detach().abs().max()) if own.numel() and torch.isfinite(own).all() else 0.0
    return bool(torch.allclose(stacked.detach(), own.detach(), rtol=1e-3, atol=1e-5 * scale + 1e-30, equal_nan=True))


def probe(group: _Group, models: list[nn.Module], objectives: list[Objective], x: torch.Tensor,
          batch_size: int, zero_grad: Callable[[], None]) -> str | None:
    """Why the stacked form of ``group`` does not compute what its runs' own modules compute (its
    terms and gradients on the first ``batch_size`` points, with fixed draws), or None when it does.
    The trained tensors' gradients are left at zero (``zero_grad``)."""
    b, runs = min(batch_size, x.shape[0]), len(group.runs)
    # each run its own points (drawn with replacement: different rows even from a tiny data set), so
    # that code mixing the rows of different points mixes different runs' numbers
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(x.shape[0], (runs, b), generator=generator).to(x.device)
    xb = x[rows]
    draws = _probe_draws(group, runs, b, x)
    try:
        zero_grad()
        terms = group.terms(xb, draws)
        checked = sorted({0, runs // 2, runs - 1})[:PROBED_RUNS]
        for j in checked:
            reason = _compare_run(group, j, models[group.runs[j]], objectives[group.runs[j]], xb[j],
                                  {k: v[j] for k, v in draws.items()}, terms)
            if reason is not None:
                return reason
        return None
    except _Disagrees as disagreement:
        return str(disagreement)
    except Exception as error:  # the stacked layers under this model's code: any failure means vmap
        return f"its forward pass fails on stacked layers ({type(error).__name__}: {error})"
    finally:
        zero_grad()


def _compare_run(group: _Group, j: int, model: nn.Module, objective: Objective, xb: torch.Tensor,
                 draws: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> str | None:
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            before = torch.get_rng_state()
            own = objective(xb, model(xb, **draws))
            if not torch.equal(before, torch.get_rng_state()):
                return "its forward pass draws random numbers that it does not declare (see vaelib.models.base)"
        trained = [(f"model {name}", p, group.grads[name]) for name, p in model.named_parameters()
                   if p.requires_grad]
        trained += [(f"objective {name}", p, group.grads[f"objective {name}"])
                    for name, p in objective.trainer_parameters()]
        grads = torch.autograd.grad(own["loss"], [p for _, p, _ in trained], allow_unused=True)
    finally:
        model.train(was_training)
    if set(own) != set(terms):
        return f"its terms {sorted(terms)} differ from a run's own {sorted(own)}"
    for name, value in own.items():
        if not _agree(terms[name][j], value):
            return f"its term {name!r} differs from a run's own"
    for (name, p, stacked_grad), own_grad in zip(trained, grads):
        if not _agree(stacked_grad[j], torch.zeros_like(p) if own_grad is None else own_grad):
            return f"the gradient of {name} differs from a run's own"
    return None


class _TorchOptimizer:
    """A ``torch.optim`` optimiser over the leaves, for an optimiser ``FlatOptimizer`` does not implement."""

    def __init__(self, name: str, lr: float, leaves: list[torch.Tensor]):
        self.optimizer = OPTIMIZERS[name](leaves, lr=lr, foreach=True)  # type: ignore[call-arg]

    def step(self) -> None:
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class GenericTrainer:
    """Trains the runs with PyTorch: per group of runs and step, one stacked (or vmapped) forward and
    backward pass; one optimiser step for all (the engine's ``Trainer`` protocol, ``_trainer.py``)."""

    backend = "torch"

    def __init__(self, models: list[nn.Module], objectives: list[Objective], optimizer: str, lr: float,
                 device: torch.device, probe_data: torch.Tensor | None = None, batch_size: int = 100):
        kinds: dict[tuple[Any, ...], list[int]] = {}
        for r, objective in enumerate(objectives):
            kinds.setdefault(objective_kind(objective), []).append(r)
        self.groups = [_Group(runs, [models[r] for r in runs], [objectives[r] for r in runs], device)
                       for runs in kinds.values()]
        held = [pair for group in self.groups for pair in group.trained_values()]
        self.layouts = [layout for _, layout in held]
        numels = [value.numel() for value, _ in held]
        flat = len({value.dtype for value, _ in held}) == 1 and optimizer in _GROUP_SETTINGS
        self.theta: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None
        if flat:  # every trained tensor a view into one buffer, its gradient into another
            self.theta = torch.empty(sum(numels), dtype=held[0][0].dtype, device=held[0][0].device)
            self.grad = torch.zeros_like(self.theta)
            pieces = list(zip(self.theta.split(numels), self.grad.split(numels)))
        else:  # several dtypes, or an optimiser the flat one does not implement: torch.optim on each tensor
            pieces = [(torch.empty(n, dtype=value.dtype, device=value.device), torch.zeros(n, dtype=value.dtype,
                                                                                       device=value.device))
                      for n, (value, _) in zip(numels, held)]
        leaves, canonical, grads = [], [], []
        with torch.no_grad():
            for (piece, gradient), (value, layout) in zip(pieces, held):
                layout.canonical(piece).copy_(value)
                leaf = layout.compute(piece).detach().requires_grad_(True)  # shares the buffer's memory
                leaf.grad = layout.compute(gradient)
                leaves.append(leaf)
                canonical.append(layout.canonical(piece))
                grads.append(layout.canonical(gradient))
        self.leaves = leaves
        first = 0
        for group in self.groups:
            count = len(group.trained_values())
            group.bind(leaves[first:first + count], canonical[first:first + count], grads[first:first + count])
            first += count
        if probe_data is not None:
            for group in self.groups:
                if group.stacked:
                    reason = probe(group, models, objectives, probe_data, batch_size, self._zero_grad)
                    if reason is not None:
                        LOG.debug("fit_batched's generic path trains runs %s by vmap, not stacked: %s",
                                  group.runs, reason)
                        group.use_vmap(reason)
        self.optimizer: FlatOptimizer | _TorchOptimizer = (
            FlatOptimizer(optimizer, lr, self.theta, self.grad, self.layouts)
            if self.theta is not None and self.grad is not None else _TorchOptimizer(optimizer, lr, leaves))
        self.n_runs = len(models)

    @torch.no_grad()
    def _zero_grad(self) -> None:
        if self.grad is not None:
            self.grad.zero_()
        else:
            for leaf in self.leaves:
                cast(torch.Tensor, leaf.grad).zero_()

    def state(self) -> dict[str, Any]:
        """Everything an epoch changes, copied: to go back to it when a run diverges."""
        return {"optimizer": self.optimizer.state_dict(),
                "tensors": [{name: t.detach().clone() for name, t in self._tensors(g).items()} for g in self.groups]}

    def mark(self) -> None:
        """Remember the state, to go back to it with ``rollback``."""
        self._mark = self.state()

    def rollback(self) -> None:
        self.restore(self._mark)

    def all_finite(self) -> bool:
        trained = [self.theta] if self.theta is not None else self.leaves
        return all(bool(torch.isfinite(t).all()) for t in trained) and all(
            bool(torch.isfinite(t).all()) for g in self.groups for t in g.objective_state().values()
            if t.is_floating_point()) and all(
            bool(torch.isfinite(t).all()) for g in self.groups for t in g.model_buffers.values() if t.is_floating_point())

    @torch.no_grad()
    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for group, saved in zip(self.groups, state["tensors"]):
            for name, tensor in self._tensors(group).items():
                tensor.copy_(saved[name])

    @staticmethod
    def _tensors(group: _Group) -> dict[str, torch.Tensor]:
        named = {f"model.{k}": v for k, v in {**group.trained, **group.model_buffers}.items()}
        named.update({f"objective.{k}": v for k, v in (*group.objective.named_parameters(),
                                                         *group.objective.named_buffers())})
        return named

    def epoch(self, x: torch.Tensor, order: torch.Tensor, draws: dict[str, torch.Tensor],
              sizes: list[int]) -> EpochTerms:
        """One epoch of every run; per group of runs, each term at every step, (steps, runs)."""
        per_step: list[list[torch.Tensor]] = [[] for _ in self.groups]
        names: list[list[str]] = [[] for _ in self.groups]
        # each group's rows of the order; its minibatch is one index_select of contiguous rows, run
        # after run (x[index] would copy number by number, several times slower)
        orders = [order if group.runs == list(range(self.n_runs)) else order[group.runs] for group in self.groups]
        first = 0
        for size in sizes:
            self._zero_grad()
            step_terms = []
            for g, group in enumerate(self.groups):
                runs = slice(None) if orders[g] is order else group.runs
                rows = orders[g][:, first:first + size]
                xb = x.index_select(0, rows.reshape(-1)).view(rows.shape[0], size, x.shape[1])
                own_draws = {keyword: draws[keyword][runs, first:first + size] for keyword, _, _ in group.draws}
                terms = group.terms(xb, own_draws)
                group.objective.before_step()
                detached = {name: value.detach() for name, value in terms.items()}
                per_step[g].append(torch.stack(list(detached.values())))  # a copy: alpha aliases the parameter
                names[g] = list(detached)
                step_terms.append(detached)
            self.optimizer.step()
            for group, terms in zip(self.groups, step_terms):
                group.objective.after_step(terms)
            first += size
        epoch = []
        for group, steps, group_names in zip(self.groups, per_step, names):
            stacked = torch.stack(steps, dim=1)  # (terms, steps, runs)
            epoch.append((group.runs, dict(zip(group_names, stacked.unbind(0)))))
        return epoch

    def parameters_finite(self) -> list[bool]:
        """Per run: whether all its tensors are finite after the epoch."""
        finite = [True] * self.n_runs
        for group in self.groups:
            for tensor in self._tensors(group).values():
                if tensor.is_floating_point():
                    ok = torch.isfinite(tensor.reshape(len(group.runs), -1)).all(1).tolist()
                    for j, r in enumerate(group.runs):
                        finite[r] = finite[r] and ok[j]
        return finite

    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        for group in self.groups:
            group.write_back(models, objectives)
