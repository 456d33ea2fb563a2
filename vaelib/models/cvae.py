"""The conditional VAE (Sohn, Lee & Yan 2015): encoder q(z | x, y) and decoder p(x | z, y) given a
class label y.

**How labels travel.** Trainers feed a model the rows of one data matrix (``vaelib.fit`` calls
``objective(batch, model(batch))``), so the label rides in the row: a CVAE reads rows
``[x, onehot(y)]``, the data's features followed by a one-hot label in the last ``n_classes``
columns. ``append_labels(x, labels, n_classes)`` builds that matrix and is where labels are
checked. The model's ``in_dim`` is, as for every vaelib model, the width of the rows it reads
(features + classes); ``data_dim`` is the number of features. Its ``ModelOutput`` sets ``target``
to the features, so every objective (``vaelib.ELBO`` among them) scores the reconstruction of x
alone, never of the label. Taught in the chapter "Conditional and adversarial autoencoders".
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.models.vae import DECODERS, VAE
from vaelib.nn import ACTIVATIONS, mlp


def class_indices(labels, n_classes: int, name: str = "labels") -> torch.Tensor:
    """``labels`` (a sequence, array or tensor of integers) as a 1-D int64 tensor, after checking
    that every one is a class index in [0, n_classes)."""
    _checks.positive_int("n_classes", n_classes)
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be integer class indices (a list, array or tensor), got "
                        f"{type(labels).__name__}") from exc
    if labels.dim() != 1:
        raise ValueError(f"{name} must be one class index per row, shape (n,), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices in [0, {n_classes}), got dtype {labels.dtype}; "
                        "pass labels.long() (not one-hot rows: append_labels makes those)")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must be class indices in [0, {n_classes}) for n_classes={n_classes}, got values "
                         f"from {labels.min().item()} to {labels.max().item()}")
    return labels.long()


def _single_label(labels) -> int | None:
    """``labels`` as an int when it is one label (a Python or NumPy integer, or a 0-d tensor)."""
    if isinstance(labels, numbers.Integral) and not isinstance(labels, bool):
        return int(labels)
    if isinstance(labels, torch.Tensor) and labels.dim() == 0 and not labels.is_floating_point():
        return int(labels)
    return None


def append_labels(x: torch.Tensor, labels, n_classes: int) -> torch.Tensor:
    """The rows ``[x_i, onehot(labels_i)]``, shape (n, d + n_classes), in x's dtype: a CVAE's input.

    ``labels`` holds one class index in [0, n_classes) per row of x. ``fit(CVAE(...), ELBO(),
    append_labels(x, y, 10))`` trains a CVAE on images x with digit labels y."""
    _checks.data_matrix("x", x)
    labels = class_indices(labels, n_classes)
    if len(labels) != len(x):
        raise ValueError(f"labels must hold one class index per row of x: x has {len(x)} rows, labels {len(labels)}")
    onehot = nn.functional.one_hot(labels.to(x.device), n_classes).to(x.dtype)
    return torch.cat([x, onehot], dim=1)


@register_model
class CVAE(nn.Module):
    """A VAE whose encoder and decoder both see a one-hot class label (see the module's docstring).

    ``in_dim``: the width of the rows the model reads, the ``data_dim = in_dim - n_classes``
    features followed by ``n_classes`` one-hot columns (build them with ``append_labels``). The
    encoder maps [x, y] to the mean and log-variance of q(z | x, y); the decoder maps [z, y] to the
    mean of x (``decoder="gaussian"``) or its pixel logits (``"bernoulli"``), as ``vaelib.VAE``'s.
    ``forward`` checks shapes only, like every vaelib model (so that it runs inside ``torch.func``
    transforms); the label values are checked where labels come in: ``append_labels``,
    ``generate``, ``decode`` and ``style_grid``.
    """

    def __init__(self, in_dim: int, n_classes: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh", decoder: str = "gaussian"):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("n_classes", n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2 (a label that takes one value conditions on nothing), "
                             f"got {n_classes}")
        if in_dim <= n_classes:
            raise ValueError(f"in_dim is the width of the rows the CVAE reads, the data's features followed by "
                             f"{n_classes} one-hot label columns, so it must exceed n_classes={n_classes}, got "
                             f"in_dim={in_dim} (for 784 pixels and 10 classes: in_dim=794)")
        _checks.positive_int("latent_dim", latent_dim)
        hidden = _checks.positive_int_sequence("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        _checks.one_of("decoder", decoder, DECODERS)
        self.in_dim, self.n_classes, self.latent_dim, self.decoder_kind = in_dim, n_classes, latent_dim, decoder
        self.data_dim = in_dim - n_classes
        self.encoder = mlp([in_dim, *hidden, 2 * latent_dim], activation)
        self.decoder = mlp([latent_dim + n_classes, *reversed(list(hidden)), self.data_dim], activation)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A row ``[x, onehot(y)]`` split into the features (n, data_dim) and the one-hot label."""
        _checks.model_input("x", x)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x must have {self.in_dim} columns, {self.data_dim} features followed by a one-hot label "
                             f"of {self.n_classes} columns, got {x.shape[1]} (shape {tuple(x.shape)}); build it with "
                             f"vaelib.append_labels(x, labels, n_classes={self.n_classes})")
        return x[:, :self.data_dim], x[:, self.data_dim:]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z | x, y), each (n, latent_dim), from rows [x, onehot(y)]."""
        self.split(x)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor, labels) -> torch.Tensor:
        """The decoder's mean of x given codes z (n, latent_dim) and class indices ``labels`` (one
        per code, or a single int for all): probabilities for the Bernoulli decoder."""
        _checks.model_input("z", z, self.latent_dim)
        onehot = self._onehot(labels, len(z), z)
        out = self.decoder(torch.cat([z, onehot], dim=1))
        return torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        """Encode [x, y], draw z = mu + sigma * noise (noise ~ N(0, I), drawn here unless given),
        decode [z, y]. ``target`` is x without its label: what the objective compares ``recon`` with."""
        features, onehot = self.split(x)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = VAE.reparameterize(mu, logvar, noise)
        recon = self.decoder(torch.cat([z, onehot], dim=1))
        return ModelOutput(recon=recon, z=z, mu=mu, logvar=logvar, recon_is_logits=self.decoder_kind == "bernoulli",
                           target=features)

    @torch.no_grad()
    def generate(self, labels, n: int | None = None, *, z: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of chosen classes: codes z ~ N(0, I) (or the given ``z``) decoded with ``labels``.

        ``labels`` is one class index (then give ``n``, the number of images, or ``z``) or a
        sequence of them, one per image. ``z``, shape (number of images, latent_dim), fixes the
        codes; otherwise they are drawn from ``generator`` (PyTorch's global one when None).
        Returns the decoder means, shape (number of images, data_dim)."""
        single = _single_label(labels)
        if single is not None:
            if (n is None) == (z is None):
                raise ValueError("for a single label give either n (how many images) or z (their codes), not "
                                 f"{'both' if n is not None else 'neither'}")
            count = _checks.positive_int("n", n) if z is None else len(z)
            labels = [single] * count
        elif n is not None:
            raise ValueError("n is for a single label; with a sequence of labels every label makes one image")
        labels = class_indices(labels, self.n_classes)
        if z is None:
            z = self.prior_draws(len(labels), generator)
        elif z.dim() != 2 or len(z) != len(labels):
            raise ValueError(f"z must hold one code per label, shape ({len(labels)}, {self.latent_dim}), got shape "
                             f"{tuple(z.shape)}")
        return self.decode(z.to(self._parameter().device), labels)

    @torch.no_grad()
    def style_grid(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Every code decoded with every label: images[i, j] decodes z[i] with labels[j] (all
        classes by default), shape (len(z), len(labels), data_dim). Along a row the code, the
        "style", stays fixed and only the label changes."""
        labels = class_indices(range(self.n_classes) if labels is None else labels, self.n_classes)
        _checks.model_input("z", z, self.latent_dim)
        rows, cols = len(z), len(labels)
        codes = z.to(self._parameter().device).repeat_interleave(cols, dim=0)
        return self.decode(codes, labels.repeat(rows)).reshape(rows, cols, self.data_dim)

    def prior_draws(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from the prior N(0, I), shape (n, latent_dim), from ``generator`` when given."""
        _checks.positive_int("n", n)
        p = self._parameter()
        return torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype,
                           device=p.device if generator is None else generator.device).to(p.device)

    def _onehot(self, labels, count: int, like: torch.Tensor) -> torch.Tensor:
        single = _single_label(labels)
        if single is not None:
            labels = [single] * count
        labels = class_indices(labels, self.n_classes)
        if len(labels) != count:
            raise ValueError(f"labels must hold one class index per code: {count} codes, {len(labels)} labels")
        return nn.functional.one_hot(labels.to(like.device), self.n_classes).to(like.dtype)

    def _parameter(self) -> torch.Tensor:
        return next(self.parameters())
