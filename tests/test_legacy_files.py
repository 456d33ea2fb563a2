"""Files written by an earlier vaelib still load and resume (tests/data/*-5b111d7*).

The files in tests/data were written by vaelib at commit 5b111d7, before the run rules moved out of
``vaelib.train`` and the engine's files were split (issue 21): a ``vaelib.fit`` checkpoint, two
``fit_batched`` training states (the generic path and the C kernel; they record the path under the
key ``"engine"``, now ``"backend"``), a reproduction's state folder interrupted after epoch 10 of 12
(its ``config.json`` names the loop-or-batched choice ``"engine"``, now ``"runner"``) and the files
of ``python -m vaelib train`` (checkpoint, history, settings). Each is resumed by this vaelib and
compared with a run that this vaelib trains from the start. The scripts that wrote them are in
tests/data/README.md.

Tolerance: the saved epochs were computed on the machine that wrote the files, the fresh run on
this one; on one machine the two agree bit for bit, elsewhere a CPU's other rounding may move the
last digits, so the comparison allows 1e-4 relative.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

import vaelib
from vaelib.checkpoint import load_checkpoint
from vaelib.cli import main
from vaelib.data import cosine_surface
from vaelib.engine import fit_batched, kernel_available

DATA = Path(__file__).parent / "data"
RTOL = 1e-4


def _close_histories(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == pytest.approx(b[name], rel=RTOL, abs=1e-7), name


def _close_states(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=RTOL, atol=1e-6)


def _fit_run():
    vaelib.seed_everything(0)
    return vaelib.VAE(3, hidden=(8,)), vaelib.KoLagrangian(delta=0.1)


FIT_SETTINGS = {"batch_size": 16, "lr": 1e-3, "seed": 7, "progress": False}


def test_a_fit_checkpoint_of_5b111d7_loads_and_resumes(tmp_path):
    path = tmp_path / "run.ckpt"
    shutil.copy(DATA / "fit-5b111d7.ckpt", path)
    assert len(next(iter(load_checkpoint(path).history.values()))) == 3
    x = cosine_surface(64, seed=0)
    model, objective = _fit_run()
    resumed = vaelib.fit(model, objective, x, epochs=5, checkpoint=path, resume_from=path, **FIT_SETTINGS)
    fresh_model, fresh_objective = _fit_run()
    fresh = vaelib.fit(fresh_model, fresh_objective, x, epochs=5, **FIT_SETTINGS)
    _close_histories(resumed.terms, fresh.terms)
    _close_states(model, fresh_model)
    _close_states(objective, fresh_objective)


def _batched_runs():
    models, objectives = [], []
    for seed, make in ((1, vaelib.ELBO), (2, vaelib.GECO)):
        vaelib.seed_everything(seed)
        models.append(vaelib.VAE(3, hidden=(8,)))
        objectives.append(make())
    return models, objectives


@pytest.mark.parametrize("backend", ["torch", pytest.param("kernel", marks=pytest.mark.skipif(
    not kernel_available(), reason="no C compiler to build the engine's kernel"))])
def test_a_fit_batched_state_of_5b111d7_loads_and_resumes(tmp_path, backend):
    path = tmp_path / "runs.state"
    shutil.copy(DATA / f"fit_batched-{backend}-5b111d7.state", path)
    x = cosine_surface(64, seed=0)
    settings = {"seeds": [1, 2], "epochs": 5, "batch_size": 16, "lr": 1e-3, "progress": False}
    models, objectives = _batched_runs()
    resumed = fit_batched(models, objectives, x, backend="auto", checkpoint=path, resume_from=path, **settings)
    fresh_models, fresh_objectives = _batched_runs()
    fresh = fit_batched(fresh_models, fresh_objectives, x, backend=backend, **settings)
    for a, b in zip(resumed, fresh):
        assert len(a) == 5
        _close_histories(a.terms, b.terms)
    for a, b in zip([*models, *objectives], [*fresh_models, *fresh_objectives]):
        _close_states(a, b)


@pytest.mark.skipif(not kernel_available(), reason="the saved reproduction was trained by the C kernel")
def test_an_interrupted_reproduction_of_5b111d7_resumes(tmp_path):
    from vaelib.experiments import ko2023

    state = tmp_path / "state"
    shutil.copytree(DATA / "reproduce-state-5b111d7", state)
    config = ko2023.Ko2023Config(runs=1, epochs=12, n_points=200, n_samples=100)
    resumed = ko2023.reproduce(config, progress=False, state_dir=state, resume=True)
    fresh = ko2023.reproduce(config, progress=False)
    for a, b in zip(resumed.to_dict()["runs"], fresh.to_dict()["runs"]):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == (pytest.approx(b[key], rel=RTOL) if isinstance(b[key], float) else b[key]), key


def test_the_files_of_train_from_5b111d7_resume(tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(DATA / "train-cli-5b111d7", folder)
    points, checkpoint = folder / "points.csv", folder / "run.ckpt"
    assert main(["train", str(points), "--checkpoint", str(checkpoint), "--resume", "--epochs", "4",
                 "--no-progress"]) == 0
    fresh = tmp_path / "fresh.ckpt"
    assert main(["train", str(points), "--checkpoint", str(fresh), "--epochs", "4", "--batch-size", "16",
                 "--hidden", "8", "--holdout", "0.25", "--objective-arg", "beta=2", "--no-progress"]) == 0
    capsys.readouterr()
    resumed_history, fresh_history = load_checkpoint(checkpoint).history, load_checkpoint(fresh).history
    assert len(resumed_history["loss"]) == 4
    # That version kept the held-out scores in the CSV only; a run of this one keeps them in the
    # checkpoint too. The resumed run goes on writing them to the CSV, equal to the fresh run's.
    heldout = {name: values for name, values in fresh_history.items() if name.startswith("heldout_")}
    _close_histories(resumed_history, {name: v for name, v in fresh_history.items() if name not in heldout})
    rows = list(csv.DictReader((folder / "run.history.csv").read_text().splitlines()))
    assert len(rows) == 4
    _close_histories({name: [float(row[name]) for row in rows] for name in heldout}, heldout)
