"""fit(): the training loop. It knows models and objectives only through their interfaces:
``objective(x, model(x))`` returns named terms with a ``"loss"``; the loop minimises that and logs
every term, once per epoch, as the mean over the epoch's minibatches (weighted by batch size).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks
from vaelib.objectives import Objective

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass
class History:
    """Per-epoch means of every named term: ``history["loss"][k]`` is epoch k's mean loss."""

    terms: dict[str, list[float]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[float]:
        return self.terms[name]

    def __len__(self) -> int:
        return len(next(iter(self.terms.values()), []))

    def append(self, epoch_means: dict[str, float]) -> None:
        for name, value in epoch_means.items():
            self.terms.setdefault(name, []).append(value)

    def final(self) -> dict[str, float]:
        """The last epoch's value of every term."""
        return {name: values[-1] for name, values in self.terms.items()}


class TrainingDiverged(FloatingPointError):
    """A loss term or a gradient became NaN or infinite.

    The model and objective have been put back to their state at the start of the failing epoch;
    ``history`` holds every completed epoch.
    """

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def fit(model: nn.Module, objective: Objective, x: torch.Tensor, *, epochs: int = 10,
        batch_size: int = 100, lr: float = 1e-3, optimizer: str = "adam", seed: int = 0,
        progress: bool = True, device: str | torch.device = "cpu",
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Train ``model`` by minimising ``objective`` on the rows of ``x`` with minibatches.

    The seed fixes the data order (a fresh permutation each epoch) and the sampling noise of the
    model (e.g. the VAE's reparameterisation); seed the model's initial weights with
    ``vaelib.seed_everything`` before building it. Learnable parameters of the objective (such as a
    Lagrange multiplier) are optimised together with the model's. Returns the per-epoch ``History``.
    Raises ``TrainingDiverged`` (epoch, step and term named) when a term or gradient is not finite.
    """
    x = _checks.data_matrix("x", x)
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_float("lr", lr)
    _checks.one_of("optimizer", optimizer, OPTIMIZERS)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a vaelib.objectives.Objective, got {type(objective).__name__}")

    device = torch.device(device)
    model.to(device)
    objective.to(device)
    x = x.to(device)
    params = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
    opt = OPTIMIZERS[optimizer](params, lr=lr, foreach=True)
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    history = History()
    n = x.shape[0]

    bar = tqdm(range(epochs), desc="training", disable=not progress, leave=False)
    for epoch in bar:
        last_good = (copy.deepcopy(model.state_dict()), copy.deepcopy(objective.state_dict()))
        sums: dict[str, float] = {}
        for step, idx in enumerate(torch.randperm(n, generator=order_rng).split(batch_size)):
            batch = x[idx.to(device)]
            terms = objective(batch, model(batch))
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            bad = _first_non_finite(terms, params)
            if bad is not None:
                model.load_state_dict(last_good[0])
                objective.load_state_dict(last_good[1])
                raise TrainingDiverged(
                    f"training stopped at epoch {epoch + 1}, step {step + 1}: {bad} is not finite. "
                    f"Model restored to the start of epoch {epoch + 1}; history holds {len(history)} "
                    "completed epochs. Try a smaller learning rate or check the data's scale.", history)
            objective.before_step()
            opt.step()
            objective.after_step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().item() * len(idx)
        means = {name: total / n for name, total in sums.items()}
        history.append(means)
        bar.set_postfix(loss=f"{means['loss']:.4g}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, means)
    return history


def _first_non_finite(terms: dict[str, torch.Tensor], params: list[torch.Tensor]) -> str | None:
    """The name of the first non-finite term, "a gradient" if only a gradient is, else None."""
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            return f"the term {name!r}"
    grads = [p.grad.sum() for p in params if p.grad is not None]
    if grads and not torch.isfinite(torch.stack(grads).sum()):
        return "a gradient"
    return None
