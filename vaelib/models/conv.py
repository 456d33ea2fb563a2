"""The convolutional autoencoder (Masci et al., 2011) with two ways back up: unpooling or
transposed convolution."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.nn import ACTIVATIONS, activation as make_activation

CONV_DECODERS = ("unpool", "transposed")


@register_model
class ConvAutoencoder(nn.Module):
    """Convolution + max-pooling stages down, their mirror image up; flat (n, h*w) images in and out.

    Each encoder stage is conv (kernel_size, same padding) -> activation -> 2x2 max-pooling, which
    halves height and width and, for the unpooling decoder, records where each maximum came from.
    ``latent_dim`` (optional) adds a linear bottleneck after the last stage; without it the code is
    the last feature map, flattened. The decoder mirrors the stages, by one of two routes:

    * ``decoder="unpool"``: max-unpooling puts every value back at the position its maximum came
      from (zeros elsewhere), then a convolution fills in. It needs the encoder's pooling indices,
      so it cannot decode a code on its own: the indices carry information past the code.
    * ``decoder="transposed"``: a learnable 2x2 transposed convolution with stride 2 doubles the
      size; it decodes any code.

    Inputs are flat rows of h*w pixels (as from ``vaelib.data``), so the model works with
    ``vaelib.fit`` and every objective; it reshapes to (n, 1, h, w) inside.
    """

    def __init__(self, image_shape: Sequence[int] = (8, 8), channels: Sequence[int] = (16, 32),
                 latent_dim: int | None = None, decoder: str = "unpool", activation: str = "relu",
                 kernel_size: int = 3):
        super().__init__()
        channels = _checks.positive_int_sequence("channels", channels)
        if not channels:
            raise ValueError("channels must list at least one stage's width, got ()")
        self.image_shape = _image_shape(image_shape, channels)
        if latent_dim is not None:
            _checks.positive_int("latent_dim", latent_dim)
        self.decoder_kind = _checks.one_of("decoder", decoder, CONV_DECODERS)
        _checks.one_of("activation", activation, ACTIVATIONS)
        _checks.positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so that 'same' padding keeps the size), got {kernel_size}")
        self.in_dim = self.image_shape[0] * self.image_shape[1]
        widths = (1, *channels)
        pad = kernel_size // 2
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=pad), make_activation(activation))
            for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        scale = 2 ** len(channels)
        self.feature_shape = (channels[-1], self.image_shape[0] // scale, self.image_shape[1] // scale)
        feature_size = self.feature_shape[0] * self.feature_shape[1] * self.feature_shape[2]
        self.latent_dim = latent_dim if latent_dim is not None else feature_size
        self.to_code = nn.Linear(feature_size, latent_dim) if latent_dim is not None else None
        self.from_code = (nn.Sequential(nn.Linear(latent_dim, feature_size), make_activation(activation))
                          if latent_dim is not None else None)
        self.up = nn.ModuleList()
        for i, (c_out, c_in) in enumerate(reversed(list(zip(widths[:-1], widths[1:])))):
            last = i == len(channels) - 1
            layer = (nn.Conv2d(c_in, c_out, kernel_size, padding=pad) if decoder == "unpool"
                     else nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2))
            self.up.append(nn.Sequential(layer) if last else nn.Sequential(layer, make_activation(activation)))

    def encode_with_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The code (n, latent_dim) and the pooling indices of every stage, first stage first."""
        _checks.model_input("x", x, self.in_dim)
        h = x.reshape(-1, 1, *self.image_shape)
        indices = []
        for stage in self.down:
            h, idx = self.pool(stage(h))
            indices.append(idx)
        h = h.flatten(1)
        return (self.to_code(h) if self.to_code is not None else h), indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code alone, shape (n, latent_dim)."""
        return self.encode_with_indices(x)[0]

    def decode(self, z: torch.Tensor, indices: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Flat images (n, h*w) from codes; the unpooling decoder also needs the encoder's indices."""
        _checks.model_input("z", z, self.latent_dim)
        if self.decoder_kind == "unpool":
            if indices is None or len(indices) != len(self.down):
                raise ValueError(f"the unpooling decoder needs the {len(self.down)} pooling index tensors "
                                 "from encode_with_indices(x); a code alone cannot be unpooled "
                                 "(use decoder='transposed' to decode codes on their own)")
            if any(idx.shape[0] != z.shape[0] for idx in indices):
                raise ValueError(f"indices hold {indices[0].shape[0]} images but z holds {z.shape[0]} codes")
        h = self.from_code(z) if self.from_code is not None else z
        h = h.reshape(-1, *self.feature_shape)
        for i, stage in enumerate(self.up):
            if self.decoder_kind == "unpool":
                h = self.unpool(h, indices[len(self.up) - 1 - i])  # type: ignore[index]  # checked above
            h = stage(h)
        return h.flatten(1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z, indices = self.encode_with_indices(x)
        return ModelOutput(recon=self.decode(z, indices), z=z)


def _image_shape(image_shape, channels) -> tuple[int, int]:
    shape = _checks.positive_int_sequence("image_shape", image_shape)
    if len(shape) != 2:
        raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
    scale = 2 ** len(channels)
    if shape[0] % scale or shape[1] % scale:
        raise ValueError(f"image_shape {tuple(shape)} must be divisible by {scale} (2 per pooling stage, "
                         f"{len(channels)} stages from channels={tuple(channels)}); use fewer stages")
    return shape
