"""``python -m vaelib export``: a trained model as files that run with PyTorch alone (``vaelib.export``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from vaelib.cli import _data, add_allow_large_flag, add_import_flag, fail

EXAMPLE = """examples:
  python -m vaelib export run.ckpt --out run            # writes run.encoder.pt2 and run.decoder.pt2

and then, with PyTorch alone (no vaelib):
  encoder = torch.export.load("run.encoder.pt2").module();  mu, logvar = encoder(x)
  decoder = torch.export.load("run.decoder.pt2").module();  x_mean = decoder(z)

  python -m vaelib export run.ckpt --out run --format onnx   # run.encoder.onnx, run.decoder.onnx
  onnxruntime.InferenceSession("run.encoder.onnx").run(None, {"x": x})   # [mu, logvar]"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "export", help="write a trained model as torch.export programs that run without vaelib",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the encoder and the decoder of the model in a checkpoint as two torch.export\n"
                    "programs (.pt2), which PyTorch runs without vaelib: PREFIX.encoder.pt2 (rows of data ->\n"
                    "a VAE's (mu, logvar), an autoencoder's code) and PREFIX.decoder.pt2 (codes -> the\n"
                    "decoder's mean). A model trained with --standardize has its scaling built in: both\n"
                    "take and give the data's own units. Any batch size. --format onnx writes ONNX models\n"
                    "instead, where the onnx and onnxscript packages are installed (not in vaelib's\n"
                    "requirements; onnxruntime runs them).",
        epilog=EXAMPLE)
    cmd.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by python -m vaelib train (or vaelib.fit)")
    cmd.add_argument("--out", required=True, metavar="PREFIX",
                     help="where to write: PREFIX.encoder.pt2 and PREFIX.decoder.pt2 (.onnx with --format onnx)")
    cmd.add_argument("--format", choices=("pt2", "onnx"), default="pt2", dest="file_format",
                     help="pt2 (default): torch.export programs, PyTorch alone runs them; onnx: ONNX models "
                          "(inputs x and z) for onnxruntime and other runtimes, which needs the onnx and "
                          "onnxscript packages installed")
    add_import_flag(cmd)
    add_allow_large_flag(cmd, "export")
    return cmd


def run(args: argparse.Namespace) -> int:
    from vaelib.export import export_model

    try:
        model, scaling = _data.trained_model(Path(args.checkpoint))
        written = export_model(model, args.out, scaling, args.file_format)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    print(f"wrote {' and '.join(map(str, written))}: the {type(model).__name__} in {args.checkpoint}"
          + (", its scaling built in" if scaling is not None else ""))
    return 0
