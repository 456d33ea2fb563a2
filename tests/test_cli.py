"""The train, sample and evaluate commands, used as a user would: ``python -m vaelib`` in a
subprocess for the end-to-end runs, ``vaelib.cli.main`` in-process for the many bad inputs (the
same code path, without paying a Python start-up per case; two cases also run as a subprocess)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib
from vaelib.cli import COMMANDS, _catalogue, main
from vaelib.cli.train import CONFIG_EXAMPLE
from vaelib.data import cosine_surface, load_array
from vaelib.estimators import iwae_bound
from vaelib.evaluation import heldout_error

ROOT = Path(__file__).resolve().parents[1]


def vaelib_command(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vaelib", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``python -m vaelib ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_data_files(folder):
    """Small data files: a CSV with a header, an .npy file, and held-out data."""
    x = cosine_surface(n=240, seed=0).numpy()
    np.savetxt(folder / "train.csv", x, delimiter=",", header="x,y,height", comments="", fmt="%.7g")
    np.save(folder / "train.npy", x)
    np.savetxt(folder / "test.csv", cosine_surface(n=60, seed=1).numpy(), delimiter=",", fmt="%.7g")
    return folder


@pytest.fixture
def files(tmp_path):
    return write_data_files(tmp_path)


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """The data files, the bad files below, and run.ckpt: a VAE trained for one epoch."""
    folder = write_data_files(tmp_path_factory.mktemp("trained"))
    for name, text in BAD_FILES.items():
        (folder / name).write_text(text)
    status = main(["train", str(folder / "train.csv"), "--checkpoint", str(folder / "run.ckpt"), "--epochs", "1",
                   "--no-progress"])
    assert status == 0
    return folder


def test_train_sample_evaluate_on_a_csv_file(files):
    trained = vaelib_command("train", "train.csv", "--checkpoint", "run.ckpt", "--epochs", 2, "--batch-size", 50,
                             "--holdout", 0.25, "--no-progress", cwd=files)
    assert trained.returncode == 0, trained.stderr
    assert "held out (60 rows)" in trained.stdout
    history = (files / "run.history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,recon,kl,heldout_loss,heldout_recon,heldout_kl" and len(history) == 3
    settings = json.loads((files / "run.settings.json").read_text())
    assert settings["model"]["name"] == "vae" and settings["objective"] == {"name": "elbo"}

    sampled = vaelib_command("sample", "run.ckpt", "-n", 50, "--out", "samples.csv", "--seed", 3, cwd=files)
    assert sampled.returncode == 0, sampled.stderr
    samples = load_array(files / "samples.csv")
    model = vaelib.load_model(files / "run.ckpt")
    expected = model.sample(50, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (50, 3) and torch.allclose(samples, expected, rtol=1e-6, atol=1e-7)

    scored = vaelib_command("evaluate", "run.ckpt", "--data", "test.csv", "-k", 20, "--json", "scores.json",
                            cwd=files)
    assert scored.returncode == 0, scored.stderr
    assert "IWAE log p(x), k=20" in scored.stdout
    scores = json.loads((files / "scores.json").read_text())
    x_test = load_array(files / "test.csv")

    def bound(k):
        generator = torch.Generator().manual_seed(0)
        return iwae_bound(model, x_test, k, decoder_variance=0.5, generator=generator).mean().item()

    assert scores["decoder_variance"] == 0.5 and scores["points"] == 60
    assert scores["iwae"] == pytest.approx(bound(20), rel=1e-6)
    assert scores["elbo"] == pytest.approx(bound(1), rel=1e-6)
    assert scores["iwae"] > scores["elbo"]  # for this seed: the k = 20 bound lies above the one-sample ELBO
    assert scores["squared_error"] == pytest.approx(heldout_error(model, x_test), rel=1e-6)


def test_train_from_a_config_file_on_an_npy_file_then_evaluate_to_stdout(files):
    config = CONFIG_EXAMPLE.replace('name = "vae"', 'name = "autoencoder"').replace('decoder = "gaussian"\n', "")
    config = config.replace('name = "elbo"', 'name = "reconstruction"').replace("beta = 1.0", "")
    (files / "run.toml").write_text(config)
    trained = vaelib_command("train", "train.npy", "--checkpoint", "ae.ckpt", "--config", "run.toml",
                             "--epochs", 1, "--no-progress", cwd=files)  # the flag overrides epochs = 50
    assert trained.returncode == 0, trained.stderr
    assert len((files / "ae.history.csv").read_text().splitlines()) == 2
    assert json.loads((files / "ae.settings.json").read_text())["training"]["epochs"] == 1

    scored = vaelib_command("evaluate", "ae.ckpt", "--data", "train.npy", "--json", "-", cwd=files)
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)
    assert scores["model"] == "Autoencoder" and scores["elbo"] is None and scores["iwae"] is None
    scaling = vaelib.load_checkpoint(files / "ae.ckpt").scaling  # the example says standardize = true
    assert scores["standardized"] and scaling is not None
    assert scores["squared_error"] == pytest.approx(
        heldout_error(vaelib.load_model(files / "ae.ckpt"), scaling.apply(load_array(files / "train.npy"))), rel=1e-6)

    refused = vaelib_command("sample", "ae.ckpt", "-n", 5, "--out", "s.npy", cwd=files)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [refused.stderr.strip()]
    assert "ae.ckpt holds a model of class Autoencoder, which has no sample(n) method" in refused.stderr


def test_a_ragged_csv_is_one_line_and_status_2_from_the_shell(files):
    (files / "ragged.csv").write_text("1,2,3\n4,5\n")
    done = vaelib_command("train", "ragged.csv", "--checkpoint", "r.ckpt", cwd=files)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.splitlines() == ["vaelib train: error: ragged.csv, line 2: 2 field(s), but the first row "
                                        "of numbers has 3; every line needs the same number of comma-separated "
                                        "fields"]


BAD_FILES = {
    "data.txt": "1,2,3\n",
    "nan.csv": "x,y,z\n1,2,3\n4,nan,6\n",
    "words.csv": "1,2,3\n4,five,6\n",
    "wide.csv": "1,2,3,4\n5,6,7,8\n",
    "unknown_key.toml": "[model]\nname = 'vae'\nwidth = 3\n",
    "unknown_top.toml": "epochs = 3\n",
    "unknown_training.toml": "[training]\nlearning_rate = 0.1\n",
    "broken.toml": "[model\n",
    "config.json": "{}",
}


@pytest.mark.parametrize("args, message", [
    (["train", "data.txt", "--checkpoint", "r.ckpt"], "data.txt: unsupported file type"),
    (["train", "missing.csv", "--checkpoint", "r.ckpt"], "no file at missing.csv"),
    (["train", "nan.csv", "--checkpoint", "r.ckpt"], "row 2, column 2 (counting rows of data from 1) is nan"),
    (["train", "words.csv", "--checkpoint", "r.ckpt"], "line 2, column 2 holds 'five', which is not a number"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--config", "unknown_key.toml"],
     "model 'vae' has no setting 'width'"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--config", "unknown_top.toml"], "unknown setting 'epochs'"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--config", "unknown_training.toml"],
     "unknown setting 'learning_rate' in [training]"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--config", "broken.toml"], "broken.toml is not valid TOML"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--config", "config.json"], "must be a TOML file"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--model", "cnn"], "unknown model 'cnn'; choose one of"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--model", "autoencoder", "--objective", "elbo"],
     "needs a model with a Gaussian encoder"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--objective", "elbo", "--objective-arg", "delta=1"],
     "objective 'elbo' has no setting 'delta'"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--model-arg", "latent_dim=1.5"], "latent_dim must be an int"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--model-arg", "in_dim=3"], "in_dim is not a setting"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--decoder", "bernoulli"],
     "a Bernoulli decoder needs data in [0, 1]"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--holdout", "1"], "expected a fraction in [0, 1)"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--epochs", "0"], "expected a positive integer"),
    (["train", "train.csv", "--checkpoint", "no/such/folder/r.ckpt"], "the folder no/such/folder does not exist"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--resume"], "there is no checkpoint at 'r.ckpt'"),
    (["train", "train.csv", "--checkpoint", "run.ckpt"], "'run.ckpt' exists; pass --resume"),
    (["train", "train.csv", "--checkpoint", "run.ckpt", "--resume", "--latent-dim", "3"],
     "latent_dim"),  # the saved model has latent_dim 2
    (["train", "wide.csv", "--checkpoint", "run.ckpt", "--resume"], "sha256"),  # other data
    (["sample", "run.ckpt", "-n", "5", "--out", "samples.txt"], "--out 'samples.txt' must end in .npy or .csv"),
    (["sample", "train.csv", "-n", "5", "--out", "samples.npy"], "train.csv is truncated or not a checkpoint"),
    (["sample", "run.ckpt", "-n", "-5", "--out", "samples.npy"], "expected a positive integer"),
    (["evaluate", "run.ckpt", "--data", "wide.csv"], "wide.csv has 4 columns, but the VAE in run.ckpt takes 3"),
    (["evaluate", "run.ckpt", "--data", "nan.csv"], "is nan"),
    (["evaluate", "train.npy", "--data", "train.csv"], "not a checkpoint"),
    (["evaluate", "run.ckpt", "--data", "train.csv", "--json", "scores.txt"], "must end in .json"),
    (["evaluate", "run.ckpt", "--data", "train.csv", "-k", "0"], "expected a positive integer"),
    (["evaluate", "run.ckpt", "--data", "train.csv", "--per-point", "p.json"], "--per-point 'p.json' must end in .csv"),
    (["encode", "run.ckpt", "--data", "wide.csv", "--out", "c.npy"], "wide.csv has 4 columns"),
    (["encode", "run.ckpt", "--data", "train.csv", "--out", "c.txt"], "must end in .npy or .csv"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--decoder", "bernoulli", "--standardize"],
     "--standardize gives values outside [0, 1]"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--columns", "x", "nope"], "names the column 'nope'"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--import", "no_such_module"], "No module named"),
    (["train", "train.csv", "--checkpoint", "r.ckpt", "--device", "gpu0"], "--device gpu0: no such device"),
])
def test_every_bad_input_is_one_line_and_status_2(trained_folder, tmp_path, capsys, monkeypatch, args, message):
    shutil.copytree(trained_folder, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    status, out, err = run_main(capsys, *args)
    assert status == 2 and not out
    assert len(err.splitlines()) == 1 and err.startswith(f"vaelib {args[0]}: error: "), err
    assert message in err, err
    for name in ("run.ckpt", "run.history.csv", "run.settings.json"):  # a refused command changes nothing
        assert (tmp_path / name).read_bytes() == (trained_folder / name).read_bytes(), name


def test_resuming_gives_the_run_that_was_never_interrupted(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    common = ["--batch-size", 60, "--holdout", 0.2, "--no-progress"]
    assert run_main(capsys, "train", "train.csv", "--checkpoint", "whole.ckpt", "--epochs", 3, *common)[0] == 0
    assert run_main(capsys, "train", "train.csv", "--checkpoint", "part.ckpt", "--epochs", 1, *common)[0] == 0
    status, out, err = run_main(capsys, "train", "train.csv", "--checkpoint", "part.ckpt", "--resume", "--epochs", 3,
                                "--no-progress")  # the other settings are read from part.settings.json
    assert status == 0, err
    whole, part = vaelib.load_model(files / "whole.ckpt"), vaelib.load_model(files / "part.ckpt")
    for name, tensor in whole.state_dict().items():
        assert torch.equal(part.state_dict()[name], tensor), name
    assert (files / "part.history.csv").read_text() == (files / "whole.history.csv").read_text()


def test_evaluate_uses_the_decoder_variance_the_objective_implies(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    status, _, err = run_main(capsys, "train", "train.csv", "--checkpoint", "beta.ckpt", "--epochs", 1,
                              "--objective-arg", "beta=0.2", "--no-progress")
    assert status == 0, err
    status, out, _ = run_main(capsys, "evaluate", "beta.ckpt", "--data", "test.csv", "-k", 5, "--json", "-")
    scores = json.loads(out)
    assert scores["decoder_variance"] == pytest.approx(0.1)
    assert scores["decoder_variance_source"] == "implied by the training objective 'elbo'"
    status, out, _ = run_main(capsys, "evaluate", "beta.ckpt", "--data", "test.csv", "-k", 5, "--json", "-",
                              "--decoder-variance", 0.5)
    given = json.loads(out)
    assert given["decoder_variance"] == 0.5 and given["decoder_variance_source"] == "given"
    assert given["iwae"] != scores["iwae"]


def test_tensorboard_event_files_hold_every_epoch(files, capsys, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(files)
    status, _, err = run_main(capsys, "train", "train.csv", "--checkpoint", "tb.ckpt", "--epochs", 2,
                              "--holdout", 0.25, "--tensorboard", "logs", "--no-progress")
    assert status == 0, err
    events = EventAccumulator(str(files / "logs"))
    events.Reload()
    assert {"train/loss", "train/kl", "heldout/loss", "heldout/recon"} <= set(events.Tags()["scalars"])
    history = (files / "tb.history.csv").read_text().splitlines()[1:]
    logged = [event.value for event in events.Scalars("heldout/loss")]
    assert [event.step for event in events.Scalars("heldout/loss")] == [1, 2]
    assert logged == pytest.approx([float(row.split(",")[4]) for row in history], rel=1e-6)


def test_every_command_has_help_with_an_example(capsys):
    for command in ("train", "sample", "evaluate"):
        status, out, _ = run_main(capsys, command, "--help")
        assert status == 0 and f"python -m vaelib {command} " in out.split("example")[1], command


def test_overwrite_replaces_a_run_and_resume_continues_one(trained_folder, tmp_path, capsys, monkeypatch):
    shutil.copytree(trained_folder, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(capsys, "train", "train.csv", "--checkpoint", "run.ckpt", "--overwrite",
                              "--epochs", 2, "--model", "autoencoder", "--no-progress")
    assert status == 0, err
    assert type(vaelib.load_model(tmp_path / "run.ckpt")).__name__ == "Autoencoder"
    status, out, err = run_main(capsys, "train", "train.csv", "--checkpoint", "run.ckpt", "--resume",
                                "--epochs", 3, "--no-progress")   # the recorded model: an autoencoder
    assert status == 0, err
    assert len((tmp_path / "run.history.csv").read_text().splitlines()) == 1 + 3


def test_help_answers_without_torch_numpy_or_matplotlib():
    """--help starts at once: it parses with the standard library alone (the help's lists and defaults
    come from vaelib/cli/catalogue.json), so none of the heavy packages is imported."""
    probe = ("import sys\nfrom vaelib.cli import main\ntry:\n    main([{args}])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    for args in ["'--help'", *(f"'{command}', '--help'" for command in COMMANDS)]:
        done = subprocess.run([sys.executable, "-c", probe.format(args=args)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stdout[-300:])


def test_the_helps_catalogue_is_vaelibs_own_values():
    """catalogue.json is a snapshot of values defined elsewhere (objective and model names, defaults);
    after changing one of them, rewrite it with: python -m vaelib.cli._catalogue"""
    assert _catalogue.catalogue() == json.loads(json.dumps(_catalogue.live())), (
        "vaelib/cli/catalogue.json is out of date: run python -m vaelib.cli._catalogue")


def test_allow_large_lifts_the_limits_for_the_command_it_is_given_to(trained_folder, capsys, monkeypatch):
    """A refusal for size says '--allow-large'; the commands it names take that flag, and the command
    then runs inside vaelib.limits.allow_large()."""
    folder = trained_folder
    status = main(["evaluate", str(folder / "run.ckpt"), "--data", str(folder / "test.csv"), "-k", str(10**12)])
    message = capsys.readouterr().err
    assert status == 2 and "--allow-large" in message and message.count("\n") == 1, message

    from vaelib import limits
    from vaelib.cli import evaluate

    seen = []
    monkeypatch.setattr(evaluate, "run", lambda args: seen.append(limits.lifted()) or 0)
    for flags in ([], ["--allow-large"]):
        assert main(["evaluate", str(folder / "run.ckpt"), "--data", str(folder / "test.csv"), *flags]) == 0
    assert seen == [False, True]
    assert not limits.lifted()


def test_a_model_that_cannot_fit_is_refused_before_it_is_built(files, capsys):
    """train counts the model on the meta device first (vaelib.limits): one line and exit 2."""
    status = main(["train", str(files / "train.csv"), "--checkpoint", str(files / "big.ckpt"), "--epochs", "1",
                   "--latent-dim", str(10**9), "--no-progress"])
    message = capsys.readouterr().err
    assert status == 2 and message.count("\n") == 1 and "needs about" in message and "--latent-dim" in message
    assert not (files / "big.ckpt").exists()


def test_the_command_line_called_in_process_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    """``main`` run inside a caller (a test, a Jupyter kernel) sets nothing in os.environ: whatever the
    caller starts later inherits it. MPLBACKEND=Agg left by one in-process command once cost the book
    build, started later from the same pytest worker, every inline figure. ``python -m vaelib`` sets
    it for its own process (vaelib/__main__.py)."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    before = dict(os.environ)
    status = main(["reproduce", "--out", str(tmp_path / "out"), "--runs", "1", "--epochs", "1", "--n-points", "200",
                   "--no-progress"])
    assert status == 0 and (tmp_path / "out" / "figure1.png").is_file()
    assert dict(os.environ) == before
