"""Greedy layer-wise pre-training of a deep autoencoder (sequential learning).

Hinton & Salakhutdinov (2006) initialised a deep autoencoder by training one layer at a time (with
restricted Boltzmann machines) and only then fine-tuned the whole network; Bengio et al. (2007)
did the same with a shallow autoencoder per layer, which is what this module does. Each level is
the shallow autoencoder made of one of the deep model's own encoder layers and its mirrored
decoder layer, trained to reconstruct that level's input (the data for the first level, the
output of the already trained levels below it otherwise). The deep model's layers are trained in
place, so fine-tuning is then an ordinary ``vaelib.fit`` of the whole model.
"""
from __future__ import annotations

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.autoencoder import ModelOutput
from vaelib.nn import TiedLinear
from vaelib.objectives import Reconstruction
from vaelib.runs import History
from vaelib.train import fit


class _LayerPair(nn.Module):
    """One level of the stack as a shallow autoencoder; it shares its modules with the deep model."""

    def __init__(self, encoder_block: nn.Sequential, decoder_block: nn.Sequential):
        super().__init__()
        self.encoder_block, self.decoder_block = encoder_block, decoder_block

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encoder_block(x)
        return ModelOutput(recon=self.decoder_block(z), z=z)


def layer_blocks(stack: nn.Sequential) -> list[nn.Sequential]:
    """Split an MLP into blocks, each a linear layer with the modules that follow it up to the next.

    ``Linear, ELU, Linear, ELU, Linear`` becomes ``[Linear, ELU], [Linear, ELU], [Linear]``. The
    blocks hold the stack's own modules (no copies).
    """
    if not isinstance(stack, nn.Sequential):
        raise TypeError(f"stack must be a torch.nn.Sequential, got {type(stack).__name__}")
    blocks: list[list[nn.Module]] = []
    for module in stack:
        if isinstance(module, (nn.Linear, TiedLinear)):
            blocks.append([module])
        elif not blocks:
            raise ValueError(f"stack must start with a linear layer, got {type(module).__name__} first")
        else:
            blocks[-1].append(module)
    return [nn.Sequential(*block) for block in blocks]


def pretrain_layerwise(model: nn.Module, x: torch.Tensor, *, epochs: int = 10, batch_size: int = 100,
                       lr: float = 1e-3, seed: int = 0, progress: bool = True,
                       device: str | torch.device = "cpu") -> list[History]:
    """Train a deep MLP autoencoder one level at a time, outermost first; return one History per level.

    ``model`` needs ``encoder`` and ``decoder`` MLPs with mirrored linear layers, as
    ``vaelib.Autoencoder`` and ``vaelib.models.TiedAutoencoder`` have. Level i trains encoder block
    i and decoder block m-1-i (m levels) with the squared reconstruction error for ``epochs``
    epochs on the representation that the already trained levels produce; level i's seed is
    ``seed + i``. Afterwards fine-tune the whole model with ``vaelib.fit``.
    """
    model.to(device)
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not isinstance(encoder, nn.Sequential) or not isinstance(decoder, nn.Sequential):
        raise TypeError(f"model must have MLP (nn.Sequential) encoder and decoder attributes, as "
                        f"vaelib.Autoencoder has; got a {type(model).__name__}")
    x = _checks.data_matrix("x", x)
    _checks.positive_int("epochs", epochs)
    encoder_blocks, decoder_blocks = layer_blocks(encoder), layer_blocks(decoder)
    if len(encoder_blocks) != len(decoder_blocks):
        raise ValueError(f"the encoder has {len(encoder_blocks)} linear layers but the decoder "
                         f"{len(decoder_blocks)}; layer-wise pre-training needs a mirrored network")
    histories = []
    representation = x.to(device)
    for level, encoder_block in enumerate(encoder_blocks):
        pair = _LayerPair(encoder_block, decoder_blocks[len(decoder_blocks) - 1 - level])
        _check_mirrored(level, encoder_block[0], pair.decoder_block[0])
        histories.append(fit(pair, Reconstruction(), representation, epochs=epochs, batch_size=batch_size,
                             lr=lr, seed=seed + level, progress=progress, device=device))
        with torch.no_grad():
            representation = encoder_block(representation)
    return histories


def _check_mirrored(level: int, encoder_layer: nn.Module, decoder_layer: nn.Module) -> None:
    if (encoder_layer.in_features, encoder_layer.out_features) != (decoder_layer.out_features,
                                                                   decoder_layer.in_features):
        raise ValueError(f"level {level}: encoder layer maps {encoder_layer.in_features} -> "
                         f"{encoder_layer.out_features} but its mirrored decoder layer maps "
                         f"{decoder_layer.in_features} -> {decoder_layer.out_features}")
