"""The generic path's optimiser: torch.optim.Adam's and SGD's update over one flat buffer.

Why: every trained tensor of every run lives in one flat buffer (``theta``, its gradient in
``grad``), so that an update is a handful of operations however many tensors a model has, where
``torch.optim.Adam`` spends about as long in Python per step as the forward and backward passes of
a small model. The arithmetic is that of ``vaelib.fit``'s optimiser, ``torch.optim.Adam`` (or
``SGD``) with ``foreach=True`` and its defaults, operation by operation and with the same Python
scalars (``_multi_tensor_adam`` in torch/optim/adam.py), so each element follows the same sequence
of roundings. It also does not import ``torch._dynamo``, which every ``torch.optim`` optimiser
imports on first use (about a second).

``state_dict`` and ``load_state_dict`` use ``torch.optim``'s format, one entry per tensor, so that
training states written when the generic path used ``torch.optim.Adam`` still resume.
"""
from __future__ import annotations

from typing import Any

import torch

from vaelib.engine._layout import ADAM_BETAS, ADAM_EPS
from vaelib.engine._stacked import Layout

# torch.optim's param_groups entry for these optimisers with vaelib's settings (torch 2.13).
_GROUP_SETTINGS: dict[str, dict[str, Any]] = {
    "adam": {"betas": ADAM_BETAS, "eps": ADAM_EPS, "weight_decay": 0, "amsgrad": False, "maximize": False,
             "foreach": True, "capturable": False, "differentiable": False, "fused": None,
             "decoupled_weight_decay": False},
    "sgd": {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False, "maximize": False,
            "foreach": True, "differentiable": False, "fused": None},
}


class FlatOptimizer:
    """Adam or SGD over ``theta`` with gradient ``grad`` (flat, same size), which hold tensors one
    after another, each as its ``Layout`` says (for the state's per-tensor format)."""

    def __init__(self, name: str, lr: float, theta: torch.Tensor, grad: torch.Tensor, layouts: list[Layout]):
        if name not in _GROUP_SETTINGS:
            raise ValueError(f"the flat optimiser implements {sorted(_GROUP_SETTINGS)}, not {name!r}")
        self.name, self.lr, self.theta, self.grad, self.layouts = name, lr, theta, grad, layouts
        self.steps = 0
        if name == "adam":
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(theta), torch.zeros_like(theta)

    def step(self) -> None:
        """One update of ``theta`` from ``grad``, as ``torch.optim.Adam``/``SGD(foreach=True)``."""
        with torch.no_grad():
            if self.name == "sgd":
                self.theta.add_(self.grad, alpha=-self.lr)
                return
            self.steps += 1
            beta1, beta2 = ADAM_BETAS
            self.exp_avg.lerp_(self.grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2)
            self.exp_avg_sq.addcmul_(self.grad, self.grad, value=1 - beta2)
            step = float(self.steps)
            bias_correction1, bias_correction2 = 1 - beta1 ** step, 1 - beta2 ** step
            step_size = (self.lr / bias_correction1) * -1
            denominator = self.exp_avg_sq.sqrt()
            denominator.div_(bias_correction2 ** 0.5)
            denominator.add_(ADAM_EPS)
            self.theta.addcdiv_(self.exp_avg, denominator, value=step_size)

    def _pieces(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor's piece of ``flat`` in the tensor's own shape."""
        sizes = [torch.Size(layout.shape).numel() for layout in self.layouts]
        return [layout.canonical(piece) for piece, layout in zip(flat.split(sizes), self.layouts)]

    def state_dict(self) -> dict[str, Any]:
        """The state in ``torch.optim``'s format (copies): per tensor its step and Adam's moments."""
        state: dict[int, dict[str, torch.Tensor]] = {}
        if self.name == "adam" and self.steps:
            step = torch.tensor(float(self.steps))
            state = {i: {"step": step.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                     for i, (m, v) in enumerate(zip(self._pieces(self.exp_avg), self._pieces(self.exp_avg_sq)))}
        group = {"lr": self.lr, **_GROUP_SETTINGS[self.name], "params": list(range(len(self.layouts)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Load a state in ``torch.optim``'s format; ValueError or KeyError when it does not fit."""
        groups = saved["param_groups"]
        if len(groups) != 1 or list(groups[0]["params"]) != list(range(len(self.layouts))):
            raise ValueError(f"the optimiser's state holds {sum(len(g['params']) for g in groups)} tensors in "
                             f"{len(groups)} groups, these runs train {len(self.layouts)} in one")
        state = saved["state"]
        if self.name == "sgd" or not state:
            if self.name == "adam":
                self.steps = 0
                self.exp_avg.zero_()
                self.exp_avg_sq.zero_()
            return
        steps = {float(entry["step"]) for entry in state.values()}
        if set(state) != set(range(len(self.layouts))) or len(steps) != 1:
            raise ValueError("the optimiser's state does not hold one step count for every tensor")
        with torch.no_grad():
            for i, (m, v) in enumerate(zip(self._pieces(self.exp_avg), self._pieces(self.exp_avg_sq))):
                for key, target in (("exp_avg", m), ("exp_avg_sq", v)):
                    value = state[i][key]
                    if value.shape != target.shape:
                        raise ValueError(f"the optimiser's {key!r} has shape {tuple(value.shape)}, its parameter "
                                         f"{tuple(target.shape)}")
                    target.copy_(value)
        self.steps = int(steps.pop())
