"""The stacked form of vaelib's blocks: R runs' layers as one layer whose tensors have a run axis.

Why: the generic path must train any model built from vaelib's blocks, with the model's own
``forward`` code and ordinary autograd, and do so many times faster than one run after another.
``torch.func.vmap`` does that generically but pays for its generality at every operation (about 3x
the loop at best, measured on the book's models). Here the model's own ``forward`` runs once for
all R runs on the rows of every run stacked one run after another, a plain (R·n, d) matrix, so the
model's code (its slicing, ``torch.cat``, reparameterisation, checks) sees exactly the kind of input
it was written for. Only the layers that hold parameters are swapped for stacked twins, which hold
every run's tensors with a leading run axis and apply run r's tensors to run r's block of rows:

* ``nn.Linear`` and ``vaelib.nn.TiedLinear`` (one batched matrix product, ``baddbmm``);
* ``vaelib.nn.ParametricTanh`` (each run's a and b on its own rows);
* ``nn.Conv2d`` and ``nn.ConvTranspose2d`` (one grouped convolution: run r is group r).

An ``nn.Sequential`` of such layers and elementwise activations (what ``vaelib.nn.mlp`` builds)
becomes one ``StackedSequential``, which works on (R, n, features) from its first layer to its
last: two reshapes per network instead of two per layer. Each tensor is kept in the layout its
layer computes with (a linear weight as Wᵀ, (R, in, out); a bias as (R, 1, out); a and b as
(R, 1, 1)), so that a step adds no transposition or reshaping of parameters to autograd's graph;
``Layout`` says how that layout relates to the parameter's own shape, for the engine's state,
checkpoints and the models it writes back to. Every operation is one autograd node, and on small
networks their number, not arithmetic, sets the time.

Layers without parameters (activations, pooling, unpooling, containers) act on each row or image
alone and stay as they are. In a ``StackedSequential`` an ELU or ReLU that follows a linear layer
takes PyTorch's in-place form (``elu_``, ``relu_``): the same values, and a backward that reads the
activation's output where the other form computes exp again (on 10 runs' minibatches of 100 rows
and 64 features, measured: 25 µs a layer instead of 92 µs, against 200 µs for the ELU itself).
A model's code that reads a layer's weight itself sees the stacked weight, (R, out, in);
``vaelib.losses.sigmoid_jacobian_penalty`` accepts that.

What is not built from these blocks (a layer type with parameters or buffers of its own) is
``Unsupported``, and the engine trains it by ``vmap`` instead. A model whose code mixes the rows of
different points (a statistic over the batch, say) would mix the runs' rows here: the engine's
probe (``_generic.py``) compares the stacked forward pass and gradients with each run's own on one
minibatch before training and falls back to ``vmap`` when they differ.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional

from vaelib.engine._layout import Unsupported
from vaelib.nn import ParametricTanh, TiedLinear

# Parameterless modules that act on every number alone: a stacked network passes them its
# (R, n, features) tensors unchanged.
ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.ELU, nn.Identity, nn.LeakyReLU, nn.Softplus, nn.GELU, nn.SiLU)
LINEAR_LAYERS = (nn.Linear, TiedLinear, ParametricTanh)
# Activations with an in-place form: what ``layer(h)`` computes, written into h.
IN_PLACE: dict[type, Callable[[torch.Tensor, nn.Module], torch.Tensor]] = {
    nn.ELU: lambda h, layer: functional.elu_(h, cast(nn.ELU, layer).alpha),
    nn.ReLU: lambda h, layer: functional.relu_(h),
}


@dataclass(frozen=True)
class Layout:
    """How a stacked tensor of shape ``own`` = (R, *parameter's shape) is held for computing:
    in ``shape``, the same numbers in another shape (a bias (R, out) as (R, 1, out)), or with
    ``transposed``, the last two axes swapped (a weight (R, out, in) held as (R, in, out))."""

    shape: tuple[int, ...]
    own: tuple[int, ...]
    transposed: bool = False

    @classmethod
    def plain(cls, own: tuple[int, ...]) -> Layout:
        return cls(tuple(own), tuple(own))

    def compute(self, flat: torch.Tensor) -> torch.Tensor:
        """The computing view of this tensor's piece of a flat buffer."""
        return flat.view(self.shape)

    def canonical(self, flat: torch.Tensor) -> torch.Tensor:
        """The view of the same piece in the parameter's own shape (R, *shape)."""
        return flat.view(self.shape).transpose(-1, -2) if self.transposed else flat.view(self.own)


Tensor = torch.Tensor | Callable[[], torch.Tensor]


def _get(tensor: Tensor) -> torch.Tensor:
    return tensor() if callable(tensor) else tensor


class StackedLinear(nn.Module):
    """R linear layers: ``weight_t`` (R, in, out) holds each run's Wᵀ, ``bias`` (R, 1, out)."""

    def __init__(self, weight_t: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight_t, self.bias = weight_t, bias

    @property
    def weight(self) -> torch.Tensor:
        """Every run's weight W, (R, out, in), as ``nn.Linear.weight`` holds one run's."""
        return _get(self.weight_t).transpose(1, 2)

    def forward3(self, h: torch.Tensor) -> torch.Tensor:
        """(R, n, in) to (R, n, out)."""
        w = _get(self.weight_t)
        return torch.bmm(h, w) if self.bias is None else torch.baddbmm(_get(self.bias), h, w)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = _get(self.weight_t)
        return self.forward3(h.reshape(w.shape[0], -1, h.shape[-1])).reshape(*h.shape[:-1], w.shape[2])


class StackedParametricTanh(nn.Module):
    """R parametric tanh layers, a_r·tanh(b_r·x) on run r's numbers; a and b of shape (R, 1, 1)."""

    def __init__(self, a: Tensor, b: Tensor):
        super().__init__()
        self.a, self.b = a, b

    def forward3(self, h: torch.Tensor) -> torch.Tensor:
        return _get(self.a) * torch.tanh(_get(self.b) * h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        runs = _get(self.a).shape[0]
        return self.forward3(h.reshape(runs, -1, h.shape[-1])).reshape(h.shape)


class StackedSequential(nn.Module):
    """An ``nn.Sequential`` of stacked linear layers and elementwise activations, computed on
    (R, n, features) from first layer to last. Indexing gives the stacked layers, as the original's."""

    def __init__(self, layers: list[nn.Module], runs: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.runs = runs
        # An ELU or ReLU right after a stacked linear layer acts in place on that layer's fresh output
        # (which the product's backward does not keep): the same function, PyTorch's own in-place
        # form, whose backward reads the activation's output instead of computing exp again.
        self.in_place = [type(layer) in IN_PLACE and i > 0 and isinstance(layers[i - 1], StackedLinear)
                         for i, layer in enumerate(layers)]

    def __getitem__(self, index: int) -> nn.Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        lead = h.shape[:-1]
        h = h.reshape(self.runs, -1, h.shape[-1])
        for layer, in_place in zip(self.layers, self.in_place):
            if isinstance(layer, (StackedLinear, StackedParametricTanh)):
                h = layer.forward3(h)
            elif in_place:
                h = IN_PLACE[type(layer)](h, layer)
            else:
                h = layer(h)
        return h.reshape(*lead, h.shape[-1])


def _by_run(h: torch.Tensor, runs: int) -> torch.Tensor:
    """Images (R·m, C, H, W), run after run, as (m, R·C, H, W): run r's channels are group r."""
    m = h.shape[0] // runs
    return h.reshape(runs, m, *h.shape[1:]).transpose(0, 1).reshape(m, runs * h.shape[1], *h.shape[2:])


def _by_image(h: torch.Tensor, runs: int) -> torch.Tensor:
    """The inverse of ``_by_run``."""
    m, channels = h.shape[0], h.shape[1] // runs
    return h.reshape(m, runs, channels, *h.shape[2:]).transpose(0, 1).reshape(runs * m, channels, *h.shape[2:])


class StackedConv2d(nn.Module):
    """R convolutions as one grouped convolution; weight (R, out, in, k, k), bias (R, out)."""

    def __init__(self, source: nn.Conv2d, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.stride, self.padding, self.dilation = source.stride, source.padding, source.dilation

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight = _get(self.weight)
        runs = weight.shape[0]
        b = None if self.bias is None else _get(self.bias).reshape(-1)
        out = functional.conv2d(_by_run(h, runs), weight.reshape(-1, *weight.shape[2:]), b, self.stride,
                                self.padding, self.dilation, groups=runs)
        return _by_image(out, runs)


class StackedConvTranspose2d(nn.Module):
    """R transposed convolutions as one grouped one; weight (R, in, out, k, k), bias (R, out)."""

    def __init__(self, source: nn.ConvTranspose2d, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.stride, self.dilation = source.stride, source.dilation
        self.padding = cast(tuple[int, ...], source.padding)  # a string padding is refused before (_unsupported_layer)
        self.output_padding = source.output_padding

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight = _get(self.weight)
        runs = weight.shape[0]
        b = None if self.bias is None else _get(self.bias).reshape(-1)
        out = functional.conv_transpose2d(_by_run(h, runs), weight.reshape(-1, *weight.shape[2:]), b, self.stride,
                                          self.padding, self.output_padding, runs, self.dilation)
        return _by_image(out, runs)


def _unsupported_layer(module: nn.Module) -> str | None:
    """Why ``module``'s own tensors have no stacked form here, or None when they have one."""
    if next(module.buffers(recurse=False), None) is not None:
        return f"its layer {type(module).__name__} keeps buffers"
    if next(module.parameters(recurse=False), None) is None or type(module) in LINEAR_LAYERS:
        return None
    if type(module) in (nn.Conv2d, nn.ConvTranspose2d):
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"its {type(module).__name__} has groups, a padding mode or a padding this engine does not stack"
        return None
    return f"it has no stacked form of the layer {type(module).__name__}"


def check_stackable(model: nn.Module) -> Unsupported | None:
    """Why the runs of ``model``'s architecture cannot take the stacked form, or None."""
    for module in model.modules():
        reason = _unsupported_layer(module)
        if reason is not None:
            return Unsupported(reason)
    return None


def _own_parameters(model: nn.Module) -> dict[str, list[tuple[str, str]]]:
    """Per module name, (local name, model's parameter name) of its own parameters; a shared
    (tied) parameter under the name ``model.named_parameters()`` gives it (its first)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return {module_name: [(local, names[id(p)]) for local, p in module.named_parameters(recurse=False)]
            for module_name, module in model.named_modules()}


def _is_chain(module: nn.Module) -> bool:
    """An ``nn.Sequential`` that a ``StackedSequential`` can compute: linear layers and elementwise activations."""
    return type(module) is nn.Sequential and len(module) > 0 and all(
        type(child) in LINEAR_LAYERS or type(child) in ELEMENTWISE for child in module)


def layouts(model: nn.Module, runs: int) -> dict[str, Layout]:
    """How each parameter of ``model`` (by name) is held for computing in its stacked twin of ``runs`` runs."""
    own = _own_parameters(model)
    consumers: dict[str, int] = {}
    for entries in own.values():
        for _, name in entries:
            consumers[name] = consumers.get(name, 0) + 1
    modules, parameters = dict(model.named_modules()), dict(model.named_parameters())
    chosen = {}
    for module_name, entries in own.items():
        module = modules[module_name]
        for local, name in entries:
            shape = tuple(parameters[name].shape)
            own_shape = (runs, *shape)
            if consumers[name] > 1:  # shared: its own shape; each user makes the view it needs
                chosen[name] = Layout.plain(own_shape)
            elif type(module) is nn.Linear and local == "weight":
                chosen[name] = Layout((runs, shape[1], shape[0]), own_shape, transposed=True)
            elif type(module) in (nn.Linear, TiedLinear) and local == "bias":
                chosen[name] = Layout((runs, 1, shape[0]), own_shape)
            elif type(module) is ParametricTanh:
                chosen[name] = Layout((runs, 1, 1), own_shape)
            else:
                chosen[name] = Layout.plain(own_shape)
    return chosen


def stacked_twin(model: nn.Module, tensors: dict[str, torch.Tensor], held: dict[str, Layout], runs: int) -> nn.Module:
    """A copy of ``model`` whose layers with parameters are stacked twins, in training mode.

    ``tensors``: by the model's parameter names, every run's tensor, held as ``held`` says (the
    ``layouts`` of the model, for R = ``runs``). ``check_stackable(model)`` must be None.
    """
    own = _own_parameters(model)
    twin = copy.deepcopy(model)
    twin.train()  # as vaelib.fit trains: a denoising model corrupts its input only in training mode

    counts: dict[str, int] = {}
    for entries in own.values():
        for _, name in entries:
            counts[name] = counts.get(name, 0) + 1

    def tensor(module_name: str, local: str, want: str) -> Tensor:
        """The layer's tensor ``local`` in the layout its stacked twin computes with: ``want`` is
        "weight_t" (R, in, out), "row" (R, 1, out), "scalar" (R, 1, 1) or "own" (R, *shape). A tensor
        used by one layer is held that way already; a shared one is held in its own shape, and each
        layer takes the view it needs at every step."""
        name = dict(own[module_name])[local]
        value = tensors[name]
        if held[name].shape[0] != runs:
            raise ValueError(f"{name} is held for {held[name].shape[0]} runs, not {runs}")
        if counts[name] == 1 or want == "own":
            return value
        if want == "weight_t":
            return lambda: value.transpose(1, 2)
        if want == "row":
            return lambda: value.unsqueeze(1)
        return lambda: value.reshape(runs, 1, 1)

    def stacked(module_name: str, module: nn.Module) -> nn.Module:
        def get(local: str, want: str) -> Tensor:
            return tensor(module_name, local, want)

        def optional(local: str, want: str) -> Tensor | None:
            return get(local, want) if getattr(module, local, None) is not None else None

        if isinstance(module, TiedLinear):  # x W + b: its source's W, (R, out_source, in_source), is this Wᵀ
            return StackedLinear(get("weight", "own"), optional("bias", "row"))
        if isinstance(module, nn.Linear):
            return StackedLinear(get("weight", "weight_t"), optional("bias", "row"))
        if isinstance(module, ParametricTanh):
            return StackedParametricTanh(get("a", "scalar"), get("b", "scalar"))
        if isinstance(module, nn.Conv2d):
            return StackedConv2d(module, get("weight", "own"), optional("bias", "own"))
        assert isinstance(module, nn.ConvTranspose2d)  # _unsupported_layer admits no other layer with parameters
        return StackedConvTranspose2d(module, get("weight", "own"), optional("bias", "own"))

    replaced: list[tuple[str, nn.Module]] = []
    for name, module in twin.named_modules():
        if name and _is_chain(module):
            layers = [stacked(f"{name}.{i}", child) if type(child) in LINEAR_LAYERS else child
                      for i, child in enumerate(module)]
            replaced.append((name, StackedSequential(layers, runs)))
        elif name and next(module.parameters(recurse=False), None) is not None and not any(
                name.startswith(f"{done}.") for done, _ in replaced):
            replaced.append((name, stacked(name, module)))
    for name, layer in replaced:
        parent, _, child = name.rpartition(".")
        twin.get_submodule(parent)._modules[child] = layer
    return twin
