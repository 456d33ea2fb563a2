"""The engine's generic path: the same model and objective modules, vectorised over runs by torch.func.

Runs are grouped by their objective's kind (class and settings that are not tensors: an ELBO with
beta = 4 and one with beta = 1 are two groups, because beta is a Python number the objective's code
reads). Within a group every tensor of the models and objectives is stacked along a leading run
axis (``torch.func.stack_module_state``), and one call of
``vmap(grad_and_value(functional_call(...)))`` computes every run's loss, terms and gradients with
the modules' own ``forward`` code and autograd: nothing about a model or an objective is written a
second time here. The optimiser then updates the stacked tensors, and the objective's own
``before_step``/``after_step`` hooks run once on the stacked state (they act elementwise).

This is the reference that the C kernel is tested against, and the path for whatever the kernel
does not cover (other models, objectives, devices, dtypes, decoders).
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from vaelib.engine._trainer import EpochTerms
from vaelib.objectives import Objective, objective_kind


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


class _Group:
    """The runs of one objective kind: their models' and objectives' tensors, stacked."""

    def __init__(self, runs: list[int], models: list[nn.Module], objectives: list[Objective],
                 device: torch.device):
        self.runs = runs
        self.template_model = copy.deepcopy(models[0]).to("meta")
        self.template_model.train()  # as vaelib.fit trains: e.g. dropout or corruption would be on
        params, self.model_buffers = stack_module_state([m.to(device) for m in models])
        self.trained = {name: p for name, p in params.items() if dict(models[0].named_parameters())[name].requires_grad}
        self.model_frozen = {name: p.detach() for name, p in params.items() if name not in self.trained}
        self.objective = copy.deepcopy(objectives[0]).to(device)
        learned = {name for name, _ in objectives[0].trainer_parameters()}
        objective_params, objective_buffers = stack_module_state([o.to(device) for o in objectives])
        for name, value in objective_params.items():
            leaf = nn.Parameter(value.detach(), requires_grad=name in learned)
            _install(self.objective, name, leaf, parameter=True)
        for name, value in objective_buffers.items():
            _install(self.objective, name, value, parameter=False)
        self.objective_trained = {name: p for name, p in self.objective.named_parameters() if name in learned}
        self.takes_noise = "noise" in inspect.signature(models[0].forward).parameters

    def leaves(self) -> list[torch.Tensor]:
        return [*self.trained.values(), *self.objective_trained.values()]

    def objective_state(self) -> dict[str, torch.Tensor]:
        """The objective's stacked tensors that are not trained by the optimiser (buffers, frozen alpha)."""
        state = {name: p.detach() for name, p in self.objective.named_parameters()
                 if name not in self.objective_trained}
        return {**state, **dict(self.objective.named_buffers())}

    def loss_function(self) -> Callable:
        """One run's (loss, terms) from its own tensors: the modules' forward passes, nothing else."""
        model, objective, takes_noise = self.template_model, self.objective, self.takes_noise

        def run_loss(model_trained, objective_trained, model_frozen, objective_state, x, noise):
            kwargs = {"noise": noise} if takes_noise else {}
            out = functional_call(model, {**model_trained, **model_frozen}, (x,), kwargs)
            terms = functional_call(objective, {**objective_trained, **objective_state}, (x, out))
            return terms["loss"], terms

        return vmap(grad_and_value(run_loss, argnums=(0, 1), has_aux=True), randomness="error")

    @torch.no_grad()
    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        stacked_model = {**self.trained, **self.model_frozen, **self.model_buffers}
        stacked_objective = {**dict(self.objective.named_parameters()), **dict(self.objective.named_buffers())}
        for j, r in enumerate(self.runs):
            for name, target in (*models[r].named_parameters(), *models[r].named_buffers()):
                target.copy_(stacked_model[name][j])
            for name, target in (*objectives[r].named_parameters(), *objectives[r].named_buffers()):
                target.copy_(stacked_objective[name][j])


class GenericTrainer:
    """Trains the runs with PyTorch: one vectorised forward and backward per group and step (the
    engine's ``Trainer`` protocol, ``_trainer.py``)."""

    backend = "torch"

    def __init__(self, models: list[nn.Module], objectives: list[Objective], optimizer_class, lr: float,
                 device: torch.device):
        kinds: dict[tuple, list[int]] = {}
        for r, objective in enumerate(objectives):
            kinds.setdefault(objective_kind(objective), []).append(r)
        self.groups = [_Group(runs, [models[r] for r in runs], [objectives[r] for r in runs], device)
                       for runs in kinds.values()]
        self.steps = [group.loss_function() for group in self.groups]
        self.optimizer = optimizer_class([leaf for g in self.groups for leaf in g.leaves()], lr=lr, foreach=True)
        self.n_runs = len(models)

    def state(self) -> dict:
        """Everything an epoch changes, copied: to go back to it when a run diverges."""
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "tensors": [{name: t.detach().clone() for name, t in self._tensors(g).items()} for g in self.groups]}

    def mark(self) -> None:
        """Remember the state, to go back to it with ``rollback``."""
        self._mark = self.state()

    def rollback(self) -> None:
        self.restore(self._mark)

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for g in self.groups for t in self._tensors(g).values()
                   if t.is_floating_point())

    @torch.no_grad()
    def restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for group, saved in zip(self.groups, state["tensors"]):
            for name, tensor in self._tensors(group).items():
                tensor.copy_(saved[name])
        for group in self.optimizer.param_groups:  # load_state_dict does not compare the moments' shapes
            for parameter in group["params"]:
                for key, value in self.optimizer.state.get(parameter, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() and value.shape != parameter.shape:
                        raise ValueError(f"the optimiser's {key!r} has shape {tuple(value.shape)}, its parameter "
                                         f"{tuple(parameter.shape)}")

    @staticmethod
    def _tensors(group: _Group) -> dict[str, torch.Tensor]:
        named = {f"model.{k}": v for k, v in {**group.trained, **group.model_buffers}.items()}
        named.update({f"objective.{k}": v for k, v in (*group.objective.named_parameters(),
                                                         *group.objective.named_buffers())})
        return named

    def epoch(self, x: torch.Tensor, order: torch.Tensor, noise: torch.Tensor | None,
              sizes: list[int]) -> EpochTerms:
        """One epoch of every run; per group of runs, each term at every step, (steps, runs)."""
        per_step: list[list[dict[str, torch.Tensor]]] = [[] for _ in self.groups]
        first = 0
        for size in sizes:
            for g, (group, step) in enumerate(zip(self.groups, self.steps)):
                batch = order[group.runs, first:first + size]
                xb = x[batch]
                nb = noise[group.runs, first:first + size] if noise is not None and group.takes_noise else \
                    torch.zeros(len(group.runs), size, 0, dtype=x.dtype, device=x.device)
                (model_grads, objective_grads), (_, terms) = step(
                    group.trained, group.objective_trained, group.model_frozen, group.objective_state(), xb, nb)
                for name, leaf in group.trained.items():
                    leaf.grad = model_grads[name]
                for name, leaf in group.objective_trained.items():
                    leaf.grad = objective_grads[name]
                group.objective.before_step()
                per_step[g].append({name: value.detach().clone() for name, value in terms.items()})  # alpha aliases
            self.optimizer.step()
            for group, steps in zip(self.groups, per_step):
                group.objective.after_step(steps[-1])
            first += size
        return [(group.runs, {name: torch.stack([s[name] for s in steps]) for name in steps[0]})
                for group, steps in zip(self.groups, per_step)]

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
