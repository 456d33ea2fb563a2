"""The adversarial autoencoder's regulariser (Makhzani et al. 2016): a two-player game on the code.

A discriminator D(z) learns to tell the encoder's codes (the aggregate posterior q(z)) from draws
of the prior p(z) = N(0, I); the encoder learns to fool it. At the game's equilibrium q(z) = p(z),
which is what the VAE's KL term asks for, without any density of q being needed.

**The two-player update through the objective interface.** ``vaelib.fit`` knows nothing of the
game. ``AdversarialRegularizer`` owns the discriminator and its optimiser:

* ``forward(x, out)`` returns ``loss`` = reconstruction + ``weight`` x the encoder's adversarial
  loss against the current discriminator, whose parameters it reads detached, so the trainer's
  backward pass reaches the model only. It also draws the batch's prior samples and computes the
  discriminator's loss on them and on the batch's codes, detached (logged as ``discriminator``).
* ``after_step(terms)``, called by the trainer after the model's step, trains the discriminator
  one step (Adam) on that loss: the gradient of the loss ``forward`` computed, since the model's
  step does not change the discriminator (after a forward pass without gradients, it computes
  the loss again).
* ``trainer_parameters()`` is empty, so the trainer's optimiser never touches the discriminator;
  ``batchable = False``: ``vaelib.engine.fit_batched`` refuses it.

**Checkpoints.** Everything the game carries from step to step is in the objective's
``state_dict``: the discriminator's weights, its optimiser's moments and step counts (buffers that
the Adam optimiser updates in place) and the state of the generator that draws the prior samples.
A checkpoint saved by ``fit`` holds them all, so a resumed run continues bit for bit as if never
stopped, and ``fit``'s rollback after a divergence restores the discriminator too.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput
from vaelib.nn import ACTIVATIONS, mlp
from vaelib.objectives import Objective, Terms, reconstruction_term

_MOMENTS = ("exp_avg", "exp_avg_sq")
# Adam's betas for the discriminator: the short-memory first moment that GAN practice uses (Radford
# et al. 2016); with the default 0.9 the codes tended to circle the prior as a tight cluster.
DISCRIMINATOR_BETAS = (0.5, 0.999)


class AdversarialRegularizer(Objective):
    """loss = R + weight·A: the adversarial autoencoder's objective (see the module's docstring).

    R is the reconstruction term (as in ``vaelib.Reconstruction``); A = mean over the batch of
    -log D(z) (the non-saturating generator loss, in nats), with D(z) the discriminator's
    probability that the code z was drawn from the prior N(0, I). The discriminator, an MLP with
    ``hidden`` layers, minimises -log D(z_prior) - log(1 - D(z)) (logged as ``discriminator``) with
    Adam at learning rate ``lr`` (betas ``DISCRIMINATOR_BETAS``). ``seed`` fixes its initial
    weights and the prior draws (it does not touch PyTorch's global generator). At the
    equilibrium D = 1/2 everywhere: A = log 2 and the discriminator's loss 2·log 2.
    """

    batchable = False
    prior_generator_state: torch.Tensor

    def __init__(self, latent_dim: int, weight: float = 1.0, hidden: Sequence[int] = (64, 64),
                 activation: str = "relu", lr: float = 1e-3, seed: int = 0):
        super().__init__()
        self.latent_dim = _checks.positive_int("latent_dim", latent_dim)
        self.weight = _checks.non_negative_float("weight", weight)
        self.hidden = _checks.positive_int_sequence("hidden", hidden)
        self.activation = _checks.one_of("activation", activation, ACTIVATIONS)
        self.lr = _checks.positive_float("lr", lr)
        self.seed = _checks.seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.discriminator = mlp([latent_dim, *self.hidden, 1], activation)
            # The prior's draws continue the stream that initialised the discriminator.
            self.register_buffer("prior_generator_state", torch.get_rng_state())
        self.discriminator_optimizer_state = nn.Module()
        for key, p in self._discriminator_parameters():
            for moment in _MOMENTS:
                self.discriminator_optimizer_state.register_buffer(f"{key}_{moment}", torch.zeros_like(p))
            self.discriminator_optimizer_state.register_buffer(f"{key}_step", torch.tensor(0.0))
        # foreach: one update for all of the discriminator's tensors (the same numbers, less overhead)
        self._optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=DISCRIMINATOR_BETAS,
                                           foreach=True)
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        z = out.z
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the model's code out.z must have shape (n, {self.latent_dim}) (this regulariser's "
                             f"latent_dim), got {tuple(z.shape)}; build AdversarialRegularizer(latent_dim="
                             f"{z.shape[-1]}) for this model")
        recon = reconstruction_term(x, out)
        adversarial = self.generator_loss(z)
        prior = self.draw_prior(len(z), like=z)
        codes = z.detach()
        discriminator = self.discriminator_loss(codes, prior)  # a graph of its own: after_step's
        self._pending = (codes, prior, discriminator)
        return {"loss": recon + self.weight * adversarial, "recon": recon, "adversarial": adversarial,
                "discriminator": discriminator.detach()}

    def after_step(self, terms: Terms) -> None:
        """Train the discriminator one step on the codes and prior draws of the last ``forward``."""
        if self._pending is None:
            raise RuntimeError("after_step trains the discriminator on the codes of the last forward call; "
                               "call the objective on a batch first")
        codes, prior, loss = self._pending
        self._pending = None
        if loss.requires_grad:
            self._step(loss)
        else:  # the forward pass ran without gradients
            self.step_discriminator(codes, prior)

    def trainer_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """None: the discriminator is trained by this objective's own optimiser, in ``after_step``."""
        return []

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit that each code came from the prior, shape (n,)."""
        return self.discriminator(z).squeeze(-1)

    def generator_loss(self, codes: torch.Tensor) -> torch.Tensor:
        """The encoder's loss A = mean of -log D(z) over the codes, with the discriminator's
        parameters held fixed (detached): its gradient reaches the codes only."""
        fixed = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, fixed, (codes,)).squeeze(-1)
        return F.softplus(-logits).mean()

    def discriminator_loss(self, codes: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss -mean log D(prior) - mean log(1 - D(codes)), in nats."""
        return F.softplus(-self.logits(prior)).mean() + F.softplus(self.logits(codes)).mean()

    @torch.enable_grad()
    def step_discriminator(self, codes: torch.Tensor, prior: torch.Tensor) -> float:
        """One Adam step of the discriminator on fixed codes and prior draws; its loss before the step."""
        loss = self.discriminator_loss(codes.detach(), prior.detach())
        self._step(loss)
        return loss.item()

    def _step(self, loss: torch.Tensor) -> None:
        """One Adam step of the discriminator down the gradient of ``loss``."""
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._link_optimizer_state()
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)

    def draw_prior(self, n: int, like: torch.Tensor | None = None) -> torch.Tensor:
        """n draws from N(0, I), shape (n, latent_dim), from the objective's own generator (its state
        is a buffer, saved with the objective); in the dtype and on the device of ``like``."""
        _checks.positive_int("n", n)
        generator = torch.Generator()
        generator.set_state(self.prior_generator_state.cpu())
        draws = torch.randn(n, self.latent_dim, generator=generator)
        self.prior_generator_state.copy_(generator.get_state())
        return draws if like is None else draws.to(device=like.device, dtype=like.dtype)

    def _discriminator_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(name.replace(".", "_"), p) for name, p in self.discriminator.named_parameters()]

    def _link_optimizer_state(self) -> None:
        """Point Adam's state at the buffers, which are the truth (a loaded checkpoint, or a move to
        another device, replaces or refills them)."""
        buffers = self.discriminator_optimizer_state
        for key, p in self._discriminator_parameters():
            self._optimizer.state[p] = {"step": getattr(buffers, f"{key}_step"),
                                        **{moment: getattr(buffers, f"{key}_{moment}") for moment in _MOMENTS}}
