"""The contract between models, objectives and trainers, and the registry of checkpointable models.

What an objective may rely on (and all it may rely on) is a model's ``forward(x)``, which returns a
``ModelOutput``. The rest of the protocol is optional and used where it applies:

* ``encode(x)``: the code (an autoencoder) or the posterior's ``(mu, logvar)`` (a VAE);
* ``decode(z)``: data-space means from codes;
* ``sample(n, generator=None)``: n points from the generative model (VAEs);
* ``latent_dim`` and ``forward(x, noise=None)``: a model that draws standard normal noise of shape
  ``(len(x), latent_dim)`` in its forward pass (the VAE's reparameterisation) takes it as an
  argument too, so that a trainer can hand it noise from a generator of its own
  (``vaelib.engine.fit_batched`` does: every run draws from its own generator);
* ``random_draws()``: a model that draws other random numbers in its forward pass declares them, a
  tuple of ``(keyword, distribution, width)`` in the order it draws them (``"normal"`` or
  ``"uniform"``, ``width`` numbers per point), and takes each as that keyword argument of
  ``forward``, drawing it itself when not given (``vaelib.DenoisingAutoencoder``'s corruption).

*An unconditional latent-variable model*, whose log p(x) the estimators (``vaelib.estimators``:
the ELBO, the IWAE bound, ``python -m vaelib evaluate``) can bound, says so and exposes its parts
(``latent_variable_problem`` names what a model lacks):

* ``prior = "standard_normal"`` (a class attribute): the declaration that its generative model is
  p(x) = ∫ N(z; 0, I) p(x | z) dz, with p(x | z) read from the code z *alone*. A structural check
  cannot see that: a conditional model (``vaelib.CVAE``) has the same parts, but its decoder also
  needs the label, and its p(x) is not defined without it, so it does not declare a prior;
* ``in_dim`` and ``latent_dim``: the widths of x and z;
* ``encode(x)``: the posterior q(z | x) = N(mu, diag(exp(logvar))) as ``(mu, logvar)``;
* ``decoder``: a module from codes of shape (..., latent_dim) to the decoder's outputs of shape
  (..., in_dim), leading sample dimensions kept: a Gaussian decoder's means, a Bernoulli decoder's
  logits;
* ``decoder_kind``: ``"gaussian"`` (p(x | z) = N(decoder(z), variance · I), the variance given to
  the estimator) or ``"bernoulli"`` (independent pixels in [0, 1]).

``vaelib.VAE`` declares all of it; so can a user's own class (registered or not).

A model is *checkpointable* when its class is registered with :func:`register_model`: the
constructor's arguments are then recorded on every instance (``model.init_args``) and stored in
checkpoints, and :func:`load_model` rebuilds the model from the file alone. Only registered classes
are rebuilt, looked up by name: a checkpoint never names code to import. Register your own class
the same way::

    @vaelib.register_model
    class MyVAE(torch.nn.Module):
        def __init__(self, in_dim: int, width: int = 64): ...
"""
from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from vaelib import limits
from vaelib.checkpoint import CheckpointError, load_checkpoint

_REGISTRY: dict[str, type[nn.Module]] = {}

STANDARD_NORMAL_PRIOR = "standard_normal"
DECODER_KINDS = ("gaussian", "bernoulli")


@dataclass
class ModelOutput:
    """What a model's forward pass hands to an objective.

    ``recon`` is the reconstruction on the data scale (or the decoder's logits when
    ``recon_is_logits``); ``z`` is the code that was decoded. VAEs also fill ``mu`` and ``logvar``,
    the mean and log-variance of the Gaussian posterior q(z|x). ``target`` is what ``recon``
    reconstructs when that is not the whole input row: a conditional model reads its label in
    the row's last columns and reconstructs only the features before them. Objectives score
    ``recon`` against ``target``, or against the input when it is None. ``contraction`` is, per
    point, the squared Frobenius norm of the encoder's Jacobian at the input, ||dz/dx||_F^2, for a
    model that computes it (``vaelib.ContractiveAutoencoder``): an objective sees only this output,
    not the encoder, so the model hands it over.
    """

    recon: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    recon_is_logits: bool = False
    target: torch.Tensor | None = None
    contraction: torch.Tensor | None = None


class LatentVariableModel(Protocol):
    """The parts of an unconditional latent-variable model (see the module's docstring), for type
    checkers; ``latent_variable_problem`` checks them at run time."""

    @property
    def prior(self) -> str: ...
    @property
    def in_dim(self) -> int: ...
    @property
    def latent_dim(self) -> int: ...
    @property
    def decoder_kind(self) -> str: ...

    def decoder(self, z: torch.Tensor) -> torch.Tensor: ...
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


def latent_variable_problem(model: object) -> str | None:
    """What ``model`` lacks to be an unconditional latent-variable model (see the module's
    docstring), in words, or None when it has everything the estimators need."""
    missing = []
    if getattr(model, "prior", None) != STANDARD_NORMAL_PRIOR:
        missing.append(f"prior = {STANDARD_NORMAL_PRIOR!r} (the declaration that p(x) = ∫ N(z; 0, I) p(x|z) dz "
                       "with the decoder reading z alone; a conditional model such as a CVAE has no p(x) "
                       "without its condition)")
    for name in ("in_dim", "latent_dim"):
        value = getattr(model, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            missing.append(f"{name} (a positive int)")
    if not callable(getattr(model, "encode", None)):
        missing.append("encode(x) returning the posterior's (mu, logvar)")
    if not callable(getattr(model, "decoder", None)):
        missing.append("decoder (a module from codes to Gaussian means or Bernoulli logits)")
    if getattr(model, "decoder_kind", None) not in DECODER_KINDS:
        missing.append(f"decoder_kind, one of {DECODER_KINDS}")
    if not missing:
        return None
    return f"the {type(model).__name__} model lacks " + "; ".join(missing)


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make a model class checkpointable (see the module's docstring).

    After ``model = Cls(...)``, ``model.init_args`` holds the constructor's arguments (defaults
    included), so that ``load_model`` can rebuild the model. The arguments must be JSON values
    (numbers, strings, booleans, lists, dicts), and ``__init__`` must not take ``*args``/``**kwargs``.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model decorates torch.nn.Module subclasses, got {cls!r}")
    name = cls.__name__
    if _REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"another model class named {name!r} is already registered; rename one of them")
    signature = inspect.signature(cls.__init__)
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
        raise TypeError(f"{name}.__init__ takes *args or **kwargs; a registered model needs named arguments")
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if type(self) is cls:  # a subclass records its own arguments, not its parent's
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.init_args = dict(list(bound.arguments.items())[1:])

    cls.__init__ = __init__  # type: ignore[method-assign]
    _REGISTRY[name] = cls
    return cls


def registered_models() -> dict[str, type[nn.Module]]:
    """The checkpointable model classes, by class name (vaelib's own and any a user registered)."""
    return dict(_REGISTRY)


def build_model(class_name: str, **init_args) -> nn.Module:
    """A new, untrained model of a registered class, from its constructor's arguments."""
    if class_name not in _REGISTRY:
        raise ValueError(f"{class_name!r} is not a registered model class; registered: {sorted(_REGISTRY)} "
                         "(decorate your class with vaelib.register_model and import it first)")
    return _REGISTRY[class_name](**init_args)


def load_model(path: str | os.PathLike) -> nn.Module:
    """The model stored in a checkpoint, rebuilt from its class and constructor arguments, with the
    saved weights. Raises ``CheckpointError`` naming the file when that is not possible."""
    checkpoint = load_checkpoint(path)
    if checkpoint.model_args is None:
        raise CheckpointError(f"{checkpoint.path} does not record how to build its {checkpoint.model_class} model "
                              "(the class is not registered with vaelib.register_model); build the model "
                              "yourself and call load_checkpoint(path).restore(model)")
    if checkpoint.model_class not in _REGISTRY:
        raise CheckpointError(f"{checkpoint.path} holds a {checkpoint.model_class} model, which is not a registered "
                              f"model class (registered: {sorted(_REGISTRY)}); import the module that defines "
                              "and registers it first")
    cls, args = _REGISTRY[checkpoint.model_class], checkpoint.model_args
    try:
        # Counted on the meta device first: forged or mistaken arguments of a huge model are refused
        # with the estimate before anything is allocated.
        limits.check_model_memory(limits.model_size(lambda: cls(**args)),
                                  f"{checkpoint.path}'s {checkpoint.model_class} model {checkpoint.model_args}",
                                  "the checkpoint's stored model arguments describe a model too large for "
                                  "this machine")
        model = cls(**args)
    except limits.TooLarge:
        raise
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint.path}: cannot rebuild its {checkpoint.model_class} model from the "
                              f"stored arguments {checkpoint.model_args} ({exc})") from exc
    checkpoint.restore(model)
    return model
