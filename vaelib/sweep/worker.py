"""A worker's job: one chunk of a sweep's runs, trained as one ``fit_batched`` call and scored.

``train_chunk`` is what a Dask worker runs (any process can: it needs the data and the runs'
specs, not the output folder); ``evaluate`` scores one trained run with the metrics its spec asks
for, each from generators seeded by the run's seed, so that a run scores the same in any process.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch

from vaelib import metrics
from vaelib.data import cosine_surface, split_indices
from vaelib.engine import RunDiverged, fit_batched
from vaelib.losses import gaussian_kl
from vaelib.objectives import kl_term, reconstruction_term
from vaelib.sweep.spec import DATA_METRICS, SAMPLE_METRICS, SURFACE_METRICS, build_run, draws_noise, training_settings


def train_chunk(x: np.ndarray | torch.Tensor, runs: Sequence[dict[str, Any]],
                keep_models: bool = False) -> list[dict[str, Any]]:
    """Train and score one chunk: ``runs`` are ``{"key": ..., "spec": Run.spec}``, trained together as
    one ``fit_batched`` call on ``x``. Returns one result per run, in order: ``key``, ``status``
    (``"ok"`` or ``"diverged"``, then ``error`` says where), ``final`` (the last epoch's terms) and
    ``eval`` (the metrics). With ``keep_models`` a finished run's result also holds ``weights`` (the
    model's state dict, on the CPU) and ``history`` (every epoch's terms), for the client to save.
    When the runs' ``[evaluation]`` holds a ``holdout`` fraction, they train on the rows that
    ``heldout_split`` leaves in, and ``eval`` adds ``heldout_recon`` (and ``heldout_kl``) on the others.
    What a Dask worker runs; callable in any process."""
    x, x_heldout = heldout_split(torch.as_tensor(x), runs[0]["spec"]) if runs else (torch.as_tensor(x), None)
    results: dict[str, dict[str, Any]] = {}
    pending = list(runs)
    while pending:
        built = [build_run(run["spec"]) for run in pending]
        try:  # the runs of a chunk share their settings but the seed (Sweep.chunks)
            histories = fit_batched([m for m, _ in built], [o for _, o in built], x,
                                    training_settings(pending[0]["spec"]),
                                    seeds=[run["spec"]["training"]["seed"] for run in pending], progress=False)
        except RunDiverged as exc:
            failed = pending.pop(exc.run)
            results[failed["key"]] = {"key": failed["key"], "status": "diverged", "final": {}, "eval": {},
                                      "error": f"diverged at epoch {exc.epoch}, step {exc.step}: {exc.term} "
                                               "is not finite"}
            continue  # the others again, from their initial weights, without it
        for run, (model, _), history in zip(pending, built, histories):
            scores = evaluate(model, x, run["spec"])
            if x_heldout is not None:
                scores.update(heldout_scores(model, x_heldout, run["spec"]))
            results[run["key"]] = {"key": run["key"], "status": "ok", "final": history.final(), "eval": scores}
            if keep_models:
                results[run["key"]].update(weights={k: v.detach().cpu().clone() for k, v in
                                                    model.state_dict().items()},
                                           history={k: list(v) for k, v in history.terms.items()})
        break
    return [results[run["key"]] for run in runs]


def heldout_split(x: torch.Tensor, spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training rows and the held-out rows of ``x`` (None without a ``holdout`` in the spec's
    ``[evaluation]``): one split for every run of the sweep, ``vaelib.data.split_indices`` with seed 0,
    so that every run is scored on the same rows."""
    fraction = spec["evaluation"].get("holdout")
    if not fraction:
        return x, None
    train_rows, heldout_rows = split_indices(len(x), fraction, seed=0)
    return x[train_rows], x[heldout_rows]


def heldout_scores(model: torch.nn.Module, x_heldout: torch.Tensor, spec: dict[str, Any]) -> dict[str, float]:
    """``heldout_recon`` and, for a model with a Gaussian encoder, ``heldout_kl``: the data metrics of
    ``evaluate`` on the held-out rows."""
    wanted = ["recon", "kl"] if draws_noise(model) else ["recon"]
    scores = evaluate(model, x_heldout, {**spec, "evaluation": {**spec["evaluation"], "metrics": wanted}})
    return {f"heldout_{name}": value for name, value in scores.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, spec: dict[str, Any]) -> dict[str, float]:
    """A trained run's metrics (the sweep file's ``[evaluation]``), each from generators seeded by the run's
    seed or the reference seed, so that a run scores the same in any process."""
    model = model.cpu().eval()
    evaluation, seed = spec["evaluation"], spec["training"]["seed"]
    wanted = evaluation["metrics"]
    values: dict[str, float] = {}
    if set(wanted) & set(DATA_METRICS):
        if draws_noise(model):
            noise = torch.randn(len(x), cast(int, model.latent_dim), generator=torch.Generator().manual_seed(seed),
                                dtype=x.dtype)
            out = model(x, noise=noise)
        else:
            out = model(x)
        values["recon"] = reconstruction_term(x, out).double().mean().item()
        if "kl" in wanted:
            kl_term(out)  # a clear error for a model without a Gaussian encoder
            values["kl"] = gaussian_kl(out.mu.double(), out.logvar.double()).mean().item()  # float64 from the start
    if set(wanted) & set(SAMPLE_METRICS + SURFACE_METRICS):
        samples = model.sample(evaluation["samples"], generator=torch.Generator().manual_seed(seed))  # type: ignore[operator]
        values.update(_sample_metrics(samples, x, spec))
    return {name: values[name] for name in wanted}


# Every run of a sweep scores its samples against the same reference points: their own pair sums are
# computed once per worker process. ReferenceSums compares the reference's exact copy, so another
# sweep's reference in the same process is computed afresh, never mistaken for this one.
_REFERENCE_SUMS = metrics.ReferenceSums()


def _sample_metrics(samples: torch.Tensor, x: torch.Tensor, spec: dict[str, Any]) -> dict[str, float]:
    data, evaluation = spec["data"], spec["evaluation"]
    n, reference_seed = evaluation["samples"], evaluation["reference_seed"]
    if data["kind"] == "cosine":
        reference = cosine_surface(n, noise=data["noise"], seed=reference_seed, half_width=data["half_width"])
        return metrics.cosine_sample_quality(samples, reference, half_width=data["half_width"],
                                             reference_sums=_REFERENCE_SUMS)
    reference = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(reference_seed))[:n]]
    bandwidth = metrics.median_bandwidth(reference)
    return {"mmd2": metrics.mmd2(samples, reference, bandwidth=bandwidth, reference_sums=_REFERENCE_SUMS),
            "energy": metrics.energy_distance(samples, reference, reference_sums=_REFERENCE_SUMS)}
