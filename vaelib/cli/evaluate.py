"""``python -m vaelib evaluate``: score a trained model on a data file.

Reports the reconstruction error (squared error per point, in squared data units) and, for a VAE,
the ELBO and the IWAE estimate of log p(x) with k importance samples (``vaelib.estimators``), in
nats per point. A log-likelihood needs the Gaussian decoder's variance; by default it is the one
the training objective implies (``vaelib.evaluation.implied_decoder_variance``, read from the
settings that ``train`` recorded beside the checkpoint), else 1/2, the plain ELBO's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaelib.cli import _files, fail, positive_float, positive_int, seed

DEFAULT_K = 100
EXAMPLE = """examples:
  python -m vaelib evaluate run.ckpt --data test.csv
  python -m vaelib evaluate run.ckpt --data test.npy -k 1000 --json scores.json
  python -m vaelib evaluate run.ckpt --data test.csv --json -          # JSON on stdout only"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "evaluate", help="score a trained model on a data file: reconstruction error, ELBO, IWAE log p(x)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score the model in a checkpoint on the rows of a data file (.npy, .csv or IDX, as\n"
                    "for train): the reconstruction error (squared error per point) and, for a VAE, the\n"
                    "ELBO and the importance-weighted (IWAE) estimate of log p(x) with k samples per\n"
                    "point, in nats per point. Prints them, and writes them as JSON with --json. The\n"
                    "Gaussian decoder's variance is by default the one the training objective implies\n"
                    "(beta/2 for ELBO(beta)), read from the settings train wrote beside the checkpoint.",
        epilog=EXAMPLE)
    cmd.add_argument("checkpoint", metavar="CKPT",
                     help="a checkpoint written by python -m vaelib train (or vaelib.fit)")
    cmd.add_argument("--data", required=True, metavar="FILE",
                     help="the data to score, with the training data's columns")
    cmd.add_argument("-k", type=positive_int, default=DEFAULT_K,
                     help=f"importance samples per point for the IWAE estimate (default {DEFAULT_K})")
    cmd.add_argument("--seed", type=seed, default=0, help="seed of the samples drawn (default 0)")
    cmd.add_argument("--decoder-variance", type=positive_float, metavar="VAR",
                     help="variance of the Gaussian decoder p(x|z) (default: the one the training objective "
                          "implies, else 0.5)")
    cmd.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE; '-': JSON on stdout only")
    return cmd


def run(args: argparse.Namespace) -> int:
    try:
        json_path = None if args.json in (None, "-") else _files.output_file(args.json, "--json", (".json",))
        scores = evaluate(Path(args.checkpoint), Path(args.data), args.k, args.seed, args.decoder_variance)
        if json_path is not None:
            _files.write_json(json_path, scores)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    if args.json == "-":
        print(json.dumps(scores, indent=2))
    else:
        print(scores_text(scores))
    return 0


def evaluate(checkpoint: Path, data: Path, k: int, seed: int, decoder_variance: float | None) -> dict:
    """The scores as a JSON-able dict (see the module's docstring)."""
    import torch

    from vaelib.data import load_array
    from vaelib.estimators import DEFAULT_DECODER_VARIANCE, iwae_bound
    from vaelib.evaluation import heldout_error
    from vaelib.models import VAE, load_model

    model = load_model(checkpoint)
    x = load_array(data)
    width = getattr(model, "in_dim", None)
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{data} has {x.shape[1]} columns, but the {type(model).__name__} in {checkpoint} takes "
                         f"{width}; score it on data with the columns it was trained on")
    model.eval()
    scores = {"checkpoint": str(checkpoint), "data": str(data), "points": len(x), "model": type(model).__name__,
              "reconstruction_error": heldout_error(model, x), "elbo": None, "iwae": None, "k": None,
              "decoder_variance": None, "decoder_variance_source": None, "seed": seed}
    if isinstance(model, VAE):
        variance, source = DEFAULT_DECODER_VARIANCE, None  # a Bernoulli decoder has no variance
        if model.decoder_kind == "gaussian":
            variance, source = ((decoder_variance, "given") if decoder_variance is not None
                                else implied_variance(checkpoint, model))
            scores.update(decoder_variance=variance, decoder_variance_source=source)

        def bound(samples: int) -> float:
            generator = torch.Generator().manual_seed(seed)
            return iwae_bound(model, x, samples, decoder_variance=variance, generator=generator).mean().item()

        scores.update(elbo=bound(1), iwae=bound(k), k=k)
    return scores


def implied_variance(checkpoint: Path, model) -> tuple[float, str]:
    """The decoder variance the training objective implies, and where it came from."""
    from vaelib.checkpoint import load_checkpoint
    from vaelib.estimators import DEFAULT_DECODER_VARIANCE
    from vaelib.evaluation import implied_decoder_variance
    from vaelib.objectives import make_objective

    settings = _files.read_settings(checkpoint)
    if settings is None:
        return DEFAULT_DECODER_VARIANCE, "default: no settings recorded beside the checkpoint"
    objective_settings = dict(settings.get("objective", {}))
    name = objective_settings.pop("name", None)
    objective = make_objective(name, **objective_settings)
    load_checkpoint(checkpoint).restore(model, objective)
    variance = implied_decoder_variance(objective)
    if variance is None:
        return DEFAULT_DECODER_VARIANCE, f"default: the {name!r} objective implies no fixed variance"
    return variance, f"implied by the training objective {name!r}"


def scores_text(scores: dict) -> str:
    lines = [f"{scores['model']} from {scores['checkpoint']} on {scores['points']} points of {scores['data']}:",
             f"  reconstruction error  {scores['reconstruction_error']:.6g}  (squared error per point)"]
    if scores["elbo"] is not None:
        lines += [f"  ELBO                  {scores['elbo']:.6g}  nats per point (one sample per point)",
                  f"  IWAE log p(x), k={scores['k']:<4} {scores['iwae']:.6g}  nats per point"]
        if scores["decoder_variance"] is not None:
            lines.append(f"  decoder variance      {scores['decoder_variance']:.6g}  "
                         f"({scores['decoder_variance_source']})")
    else:
        lines.append("  (the ELBO and log p(x) are estimated for vaelib.VAE models only)")
    return "\n".join(lines)
