"""``python -m vaelib evaluate``: score a trained model on a data file.

Each quantity has one name and one unit:

* ``squared_error``: the squared reconstruction error ||x - x_hat||^2 per point (at the posterior
  mean, a Bernoulli decoder's pixel probabilities as x_hat), in squared units of the data the
  model takes (standardised units for a model trained with ``--standardize``);
* ``cross_entropy`` (Bernoulli decoders): -log p(x | z) at the posterior mean, summed over the
  features, in nats per point: the ``recon`` term that training logs for such a model;
* ``elbo`` and ``iwae`` (VAEs, and any unconditional latent-variable model that follows the protocol
  in ``vaelib.models.base``, a user's own class too): the ELBO and the IWAE estimate of log p(x) with k importance
  samples (``vaelib.estimators``), in nats per point of the data in its own units (for a
  standardised model, minus the scaling's log-Jacobian, sum_j log scale_j).

A Gaussian decoder's log-likelihood needs its variance: the one the training objective implies
(``vaelib.evaluation.implied_decoder_variance``, read from the settings ``train`` recorded beside
the checkpoint), for a sigma-VAE the one it learned (the square of its calibrated sigma in the
last epoch, from the checkpoint's history), else 1/2, the plain ELBO's. Data a Bernoulli decoder
cannot score (outside [0, 1]) is refused, as ``train`` refuses it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

from vaelib.cli import (_data, _files, add_allow_large_flag, add_import_flag, fail, positive_float, positive_int,
                        seed)

DEFAULT_K = 100
EXAMPLE = """examples:
  python -m vaelib evaluate run.ckpt --data test.csv
  python -m vaelib evaluate run.ckpt --data test.npy -k 1000 --json scores.json
  python -m vaelib evaluate run.ckpt --data test.csv --per-point scores.csv   # one row per point
  python -m vaelib evaluate run.ckpt --data test.csv --json -          # JSON on stdout only"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "evaluate", help="score a trained model on a data file: squared error, ELBO, IWAE log p(x)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score the model in a checkpoint on the rows of a data file (as for train): the\n"
                    "squared reconstruction error per point, for a Bernoulli decoder the cross-entropy\n"
                    "(nats per point), and for a VAE the ELBO and the importance-weighted (IWAE)\n"
                    "estimate of log p(x) with k samples per point, in nats per point. A model trained\n"
                    "with --standardize scores the data through its scaling; log p(x) is then in the\n"
                    "data's own units. The Gaussian decoder's variance is by default the one the\n"
                    "training objective implies (beta/2 for ELBO(beta)), or the one a sigma-VAE learned.",
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
                          "implies or a sigma-VAE learned, else 0.5)")
    cmd.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE; '-': JSON on stdout only")
    cmd.add_argument("--per-point", metavar="FILE.csv",
                     help="also write every point's scores, one row per point, as CSV")
    _data.add_column_flags(cmd, "; default: those train used")
    add_import_flag(cmd)
    add_allow_large_flag(cmd, "evaluate")
    return cmd


def run(args: argparse.Namespace) -> int:
    try:
        json_path = None if args.json in (None, "-") else _files.output_file(args.json, "--json", (".json",))
        per_point_path = (None if args.per_point is None
                          else _files.output_file(args.per_point, "--per-point", (".csv",)))
        checkpoint = Path(args.checkpoint)
        selection = _data.flag_selection(args) or _data.recorded_selection(checkpoint)
        scores, per_point = evaluate(checkpoint, Path(args.data), args.k, args.seed, args.decoder_variance,
                                     selection)
        if json_path is not None:
            _files.write_json(json_path, scores)
        if per_point_path is not None:
            _files.write_table(per_point_path, [dict(zip(per_point, row)) for row in zip(*per_point.values())])
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    if args.json == "-":
        print(json.dumps(scores, indent=2))
    else:
        print(scores_text(scores))
    return 0


def evaluate(checkpoint: Path, data: Path, k: int, seed: int, decoder_variance: float | None,
             selection: dict | None = None) -> tuple[dict, dict[str, list[float]]]:
    """The scores as a JSON-able dict (see the module's docstring), and the per-point scores by name."""
    import torch

    from vaelib.estimators import DEFAULT_DECODER_VARIANCE, iwae_bound
    from vaelib.evaluation import reconstruction_errors
    from vaelib.losses import bernoulli_nll
    from vaelib.models.base import LatentVariableModel, latent_variable_problem

    model, scaling = _data.trained_model(checkpoint)
    x = _data.model_input(model, scaling, _data.read_data(data, selection or {}), data, checkpoint)
    per_point = {"squared_error": reconstruction_errors(model, x)}
    scores = {"checkpoint": str(checkpoint), "data": str(data), "points": len(x), "model": type(model).__name__,
              "standardized": scaling is not None, "squared_error": None, "cross_entropy": None, "elbo": None,
              "iwae": None, "k": None, "decoder_variance": None, "decoder_variance_source": None, "seed": seed,
              "not_a_latent_variable_model": latent_variable_problem(model)}
    if scores["not_a_latent_variable_model"] is None:
        lvm = cast(LatentVariableModel, model)
        if lvm.decoder_kind == "bernoulli":
            with torch.no_grad():
                mu, _ = lvm.encode(x)
                per_point["cross_entropy"] = bernoulli_nll(lvm.decoder(mu), x)
        variance = DEFAULT_DECODER_VARIANCE  # a Bernoulli decoder has no variance
        if lvm.decoder_kind == "gaussian":
            variance, source = ((decoder_variance, "given") if decoder_variance is not None
                                else _data.decoder_variance(checkpoint, model))
            scores.update(decoder_variance=variance, decoder_variance_source=source)
        shift = 0.0 if scaling is None else scaling.log_jacobian()  # log p in the data's own units

        def bound(samples: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return iwae_bound(lvm, x, samples, decoder_variance=variance, generator=generator) - shift

        per_point.update(elbo=bound(1), iwae=bound(k))
        scores["k"] = k
    for name, values in per_point.items():
        scores[name] = values.mean().item()
    return scores, {name: values.tolist() for name, values in per_point.items()}


def scores_text(scores: dict) -> str:
    lines = [f"{scores['model']} from {scores['checkpoint']} on {scores['points']} points of {scores['data']}:",
             f"  squared error         {scores['squared_error']:.6g}  per point, in "
             f"{'standardised' if scores['standardized'] else 'the data' + chr(39) + 's'} units squared"]
    if scores["cross_entropy"] is not None:
        lines.append(f"  cross-entropy         {scores['cross_entropy']:.6g}  nats per point (-log p(x|z) at the "
                     "posterior mean)")
    if scores["elbo"] is not None:
        units = "nats per point" + (" (the data's own units)" if scores["standardized"] else "")
        lines += [f"  ELBO                  {scores['elbo']:.6g}  {units}, one sample per point",
                  f"  IWAE log p(x), k={scores['k']:<4} {scores['iwae']:.6g}  {units}"]
        if scores["decoder_variance"] is not None:
            lines.append(f"  decoder variance      {scores['decoder_variance']:.6g}  "
                         f"({scores['decoder_variance_source']})")
    else:
        lines.append(f"  (no ELBO or log p(x): {scores['not_a_latent_variable_model']}; see vaelib.models.base)")
    return "\n".join(lines)
