"""A trained model as files that run without vaelib: ``torch.export`` programs (``.pt2``).

``export_model(model, path_prefix, scaling=None)`` writes two programs beside each other:

* ``PREFIX.encoder.pt2``: rows of data (n, d) -> the code: a VAE's posterior mean and
  log-variance, ``(mu, logvar)``, an autoencoder's code;
* ``PREFIX.decoder.pt2``: codes (n, k) -> the decoder's mean of x (a Bernoulli decoder's pixel
  probabilities);

with the model's ``Scaling`` folded in, so both speak the data's own units. Anyone with PyTorch
runs them, no vaelib needed::

    encoder = torch.export.load("run.encoder.pt2").module()
    mu, logvar = encoder(x)

Why torch.export by default and not ONNX: the ONNX exporter of torch 2.13 needs the ``onnx`` and
``onnxscript`` packages and running the file needs ``onnxruntime``, none of which the pinned
requirements hold; a ``.pt2`` file needs PyTorch alone. Where those packages are installed,
``file_format="onnx"`` (``python -m vaelib export --format onnx``) writes ONNX files instead. (``torch.jit.script`` cannot compile the
models, whose ``forward`` returns a ``ModelOutput`` dataclass.) The batch size is dynamic.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib import _io
from vaelib.scaling import Scaling

FORMATS = ("pt2", "onnx")


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module, scaling: Scaling | None):
        super().__init__()
        self.model = model
        self.mean, self.scale = _scaling_tensors(model, scaling)

    def forward(self, x: torch.Tensor):
        return self.model.encode((x - self.mean) / self.scale)  # type: ignore[operator]


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module, scaling: Scaling | None):
        super().__init__()
        self.model = model
        self.mean, self.scale = _scaling_tensors(model, scaling)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z) * self.scale + self.mean  # type: ignore[operator]


def _scaling_tensors(model: nn.Module, scaling: Scaling | None) -> tuple[torch.Tensor, torch.Tensor]:
    width = int(model.in_dim)  # type: ignore[arg-type]
    if scaling is None:
        return torch.zeros(width), torch.ones(width)
    return torch.tensor(scaling.mean, dtype=torch.float32), torch.tensor(scaling.scale, dtype=torch.float32)


def export_model(model: nn.Module, path_prefix: str | os.PathLike[str], scaling: Scaling | None = None,
                 file_format: str = "pt2") -> list[Path]:
    """Write ``PREFIX.encoder.pt2`` and ``PREFIX.decoder.pt2`` (see the module's docstring), each
    together and atomically; returns their paths. The model needs ``in_dim``, ``latent_dim``, ``encode`` and
    ``decode`` (vaelib's VAE and autoencoders have them). ``file_format="onnx"`` writes the same two
    programs as ``PREFIX.encoder.onnx`` and ``PREFIX.decoder.onnx`` through ``torch.onnx.export``
    (inputs ``x`` and ``z``, a dynamic batch), which needs the ``onnx`` and ``onnxscript`` packages."""
    if file_format not in FORMATS:
        raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
    missing = [name for name in ("in_dim", "latent_dim", "encode", "decode") if not hasattr(model, name)]
    if missing:
        raise TypeError(f"{type(model).__name__} cannot be exported: it has no {', '.join(missing)}")
    prefix = Path(path_prefix)
    model = model.cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    widths: dict[str, Any] = {"encoder": model.in_dim, "decoder": model.latent_dim}
    contents = {}
    for part, module in (("encoder", _Encoder(model, scaling)), ("decoder", _Decoder(model, scaling))):
        example = torch.zeros(2, int(widths[part]))
        if file_format == "onnx":
            contents[prefix.with_name(f"{prefix.name}.{part}.onnx")] = _onnx_bytes(module.eval(), example, part)
            continue
        program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        contents[prefix.with_name(f"{prefix.name}.{part}.pt2")] = buffer.getvalue()
    return _io.write_files(contents, what="the exported model")  # both files or neither


def _onnx_bytes(module: nn.Module, example: torch.Tensor, part: str) -> bytes:
    """One part as an ONNX model (torch.onnx's exporter, from torch.export), serialised."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"ONNX export needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}, which "
                         "vaelib's requirements do not hold: pip install onnx onnxscript (and onnxruntime to run "
                         "the files), or export to .pt2, which needs PyTorch alone")
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's own notices (deprecations inside torch)
            logger.setLevel(logging.ERROR)  # and its note that torchvision's operators are skipped
            program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                        input_names=["x" if part == "encoder" else "z"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    finally:
        logger.setLevel(level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto.SerializeToString()
