"""A practitioner's own data through the command line (issue 23): scores only where they mean
something, scaling that travels with the model, warnings at the end of training, and the commands
and options people expect (encode, --import, --version, --per-point, --with-noise, columns)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn import datasets

import vaelib
from vaelib.checkpoint import load_checkpoint
from vaelib.cli import main
from vaelib.cli._train_settings import preset_layer
from vaelib.data import split_indices
from vaelib.diagnostics import KL_ACTIVE_THRESHOLD, diagnose, findings
from vaelib.estimators import iwae_bound
from vaelib.losses import bernoulli_nll
from vaelib.objectives import ALPHA_CEILING, relative_kappa
from vaelib.readers import load_array
from vaelib.runs import History
from vaelib.scaling import Scaling, scale_problem, warn_scale
from vaelib.warning_types import (DataScaleWarning, HeldoutRisingWarning, MultiplierAtClampWarning,
                                  PosteriorCollapseWarning, VaelibWarning)


def run_main(capsys, *args) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Scikit-learn's data sets as a practitioner saves them: breast cancer as CSV (raw scales, a
    an identifier column and a text label), digits as 0-16 and 0-1 arrays, wine standardised."""
    monkeypatch.chdir(tmp_path)
    cancer = datasets.load_breast_cancer()
    with open("cancer.csv", "w") as f:
        f.write("id," + ",".join(n.replace(" ", "_") for n in cancer.feature_names) + ",diagnosis\n")
        for i, (row, label) in enumerate(zip(cancer.data, cancer.target)):
            f.write(f"{i}," + ",".join(f"{v:.6g}" for v in row) + f",{cancer.target_names[label]}\n")
    digits = datasets.load_digits().data.astype(np.float32)
    np.save("digits16.npy", digits)
    np.save("digits01.npy", digits / 16)
    wine = datasets.load_wine().data
    np.save("wine_std.npy", ((wine - wine.mean(0)) / wine.std(0)).astype(np.float32))
    return tmp_path


def test_evaluate_refuses_data_a_bernoulli_decoder_cannot_score_and_names_its_units(folder, capsys):
    """Case 1 and case 8: 0-16 pixels are refused (train refuses them too); on 0-1 pixels the
    cross-entropy is reported under its own name, beside the squared error."""
    status, out, err = run_main(capsys, "train", "digits01.npy", "--checkpoint", "b.ckpt", "--decoder", "bernoulli",
                                "--epochs", 1, "--no-progress")
    assert status == 0, err
    assert "(recon: the cross-entropy -log p(x|z), nats per point; kl: nats per point)" in out
    status, out, err = run_main(capsys, "evaluate", "b.ckpt", "--data", "digits16.npy", "-k", 10)
    assert status == 2 and not out and len(err.splitlines()) == 1
    assert "a Bernoulli decoder scores data in [0, 1], but digits16.npy ranges over [0, 16]" in err
    status, out, err = run_main(capsys, "evaluate", "b.ckpt", "--data", "digits01.npy", "-k", 10, "--json", "-")
    assert status == 0, err
    scores = json.loads(out)
    model, x = vaelib.load_model("b.ckpt"), load_array("digits01.npy")
    with torch.no_grad():
        cross_entropy = bernoulli_nll(model.decoder(model.encode(x)[0]), x).mean().item()
    assert scores["cross_entropy"] == pytest.approx(cross_entropy, rel=1e-6)
    assert "reconstruction_error" not in scores and 0 < scores["squared_error"] < scores["cross_entropy"]
    assert scores["iwae"] < 0  # a Bernoulli log-likelihood is at most 0


def test_standardize_travels_with_the_model_and_raw_scales_are_warned_about(folder, capsys):
    """Case 2 and the column flags: raw breast-cancer columns get one warning line; with
    --standardize the training split's scaling is in the checkpoint, and sample, encode and
    evaluate apply or invert it; evaluate and encode reuse the columns train selected."""
    columns = ["--drop", "id", "--label", "diagnosis"]
    status, out, err = run_main(capsys, "train", "cancer.csv", "--checkpoint", "raw.ckpt", "--epochs", 1,
                                "--no-progress", *columns)
    assert status == 0, err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("vaelib train: warning: ")]
    assert "far from unit scale" in err and err.strip().endswith("pass --standardize")
    status, out, err = run_main(capsys, "train", "cancer.csv", "--checkpoint", "std.ckpt", "--epochs", 2,
                                "--holdout", 0.2, "--standardize", "--no-progress", *columns)
    assert status == 0 and "far from unit scale" not in err, err
    x = vaelib.readers.load_table("cancer.csv", drop=["id"], label="diagnosis").x
    assert x.shape == (569, 30)
    train_rows, _ = split_indices(len(x), 0.2, seed=0)
    scaling = load_checkpoint("std.ckpt").scaling
    expected = Scaling.fit(x[train_rows])
    assert scaling is not None and scaling == expected and scale_problem(scaling.apply(x[train_rows])) is None
    model = vaelib.load_model("std.ckpt")

    assert run_main(capsys, "sample", "std.ckpt", "-n", 20, "--out", "s.npy", "--seed", 4)[0] == 0
    drawn = scaling.invert(model.sample(20, generator=torch.Generator().manual_seed(4)))
    assert torch.allclose(torch.from_numpy(np.load("s.npy")), drawn)

    assert run_main(capsys, "encode", "std.ckpt", "--data", "cancer.csv", "--out", "codes.npy")[0] == 0
    with torch.no_grad():
        codes = model.encode(scaling.apply(x))[0]
    assert torch.allclose(torch.from_numpy(np.load("codes.npy")), codes)

    status, out, err = run_main(capsys, "evaluate", "std.ckpt", "--data", "cancer.csv", "-k", 5, "--json", "-")
    assert status == 0, err
    scores = json.loads(out)
    bound = iwae_bound(model, scaling.apply(x), 5, generator=torch.Generator().manual_seed(0))
    assert scores["standardized"] and scores["iwae"] == pytest.approx(
        (bound - scaling.log_jacobian()).mean().item(), rel=1e-5)


def test_a_sigma_vae_is_scored_under_the_variance_it_learned(folder, capsys):
    """Case 3: not the plain ELBO's 1/2, but the square of its calibrated sigma in the last epoch."""
    assert run_main(capsys, "train", "wine_std.npy", "--checkpoint", "s.ckpt", "--objective", "sigma-vae",
                    "--epochs", 2, "--no-progress")[0] == 0
    status, out, err = run_main(capsys, "evaluate", "s.ckpt", "--data", "wine_std.npy", "-k", 5, "--json", "-")
    assert status == 0, err
    scores = json.loads(out)
    sigma = load_checkpoint("s.ckpt").history["sigma"][-1]
    assert scores["decoder_variance"] == pytest.approx(sigma**2) and scores["decoder_variance"] != 0.5
    assert scores["decoder_variance_source"].startswith("learned by the 'sigma-vae' objective")


def test_geco_at_its_clamp_is_one_warning_line_and_kappa_can_be_relative(folder, capsys):
    """Case 4: a kappa the model cannot reach drives alpha to its ceiling; the command says so.
    kappa_fraction sets kappa as a fraction of the data's variance, recorded beside it."""
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "g.ckpt", "--objective", "geco",
                                "--objective-arg", "rate=1", "--epochs", 4, "--no-progress")
    assert status == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaelib train: warning: the multiplier alpha is at its ceiling")
    assert "kappa = 0.05" in lines[0]
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "f.ckpt", "--objective", "geco",
                                "--objective-arg", "kappa_fraction=0.5", "--epochs", 1, "--no-progress")
    assert status == 0, err
    recorded = json.loads(open("f.settings.json").read())["objective"]
    assert recorded["kappa_fraction"] == 0.5
    assert recorded["kappa"] == pytest.approx(relative_kappa(load_array("wine_std.npy"), 0.5))
    assert recorded["kappa"] == pytest.approx(0.5 * 13, rel=1e-4)  # 13 standardised columns: variance 13
    status, _, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "e.ckpt", "--objective-arg",
                              "kappa_fraction=0.5")
    assert status == 2 and "kappa_fraction sets GECO's kappa" in err


def test_geco_with_a_relative_kappa_on_standardised_data_ends_off_its_clamp(folder, capsys):
    """Case 4's cause: kappa = 0.05 is absolute, in R's units (a squared error summed over 13
    standardised columns, about 6 at best for a 2-D code), so alpha only grows; and the rate is
    absolute too, so even a reachable absolute kappa (6.5) sends alpha to its ceiling before R gets
    there, where its moving average holds it. kappa_fraction=0.5 sets kappa = 0.5·V and the rate per
    unit of V (V = 13): alpha ends between its floor and ceiling, R at kappa, and no warning."""
    common = ["--objective", "geco", "--epochs", 100, "--no-progress"]
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "a.ckpt", *common,
                                "--objective-arg", "kappa=6.5")
    assert status == 0 and load_checkpoint("a.ckpt").history["alpha"][-1] == ALPHA_CEILING
    assert "the reconstruction term came down to kappa = 6.5 only at epoch" in err and "overshot" in err
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "r.ckpt", *common,
                                "--objective-arg", "kappa_fraction=0.5")
    assert status == 0 and not err, err
    history = load_checkpoint("r.ckpt").history
    assert 1.0 < history["alpha"][-1] < 100 and max(history["alpha"]) < 100  # never near 1e6
    assert history["recon"][-1] <= 6.5 < history["recon"][0]  # the constraint was met
    recorded = json.loads(open("r.settings.json").read())["objective"]
    assert recorded["data_variance"] == pytest.approx(13, rel=1e-4)


def test_a_preset_sizes_the_model_and_the_epochs_by_the_data_below_the_flags(folder, capsys):
    """Case 5: --preset tabular on 178 rows of 13 columns: latent round(13/4) = 3, one hidden layer of
    4·13 = 52 units, and 1,000 epochs (2 minibatches of 100 per epoch, for 2,000 steps); a flag
    overrides what the preset gives, and the preset is recorded so that a resumed run keeps it."""
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "p.ckpt", "--preset", "tabular",
                                "--epochs", 2, "--no-progress")
    assert status == 0, err
    settings = json.loads(open("p.settings.json").read())
    assert settings["preset"] == "tabular" and settings["model"]["latent_dim"] == 3
    assert settings["model"]["hidden"] == [52] and settings["training"]["epochs"] == 2  # the flag wins
    assert preset_layer("tabular", 178, 13, 100) == {"model": {"latent_dim": 3, "hidden": [52]},
                                                     "training": {"epochs": 1000}}
    assert preset_layer("tabular", 455, 30, 100)["training"]["epochs"] == 400  # breast cancer's training rows
    assert preset_layer("tabular", 60_000, 784, 100)["training"]["epochs"] == 20  # at least 20
    assert preset_layer("images", 60_000, 784, 100)["model"] == {"latent_dim": 16, "hidden": [392, 98]}
    assert preset_layer("toy", 10, 3, 100)["training"] == {"epochs": 10}
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "p.ckpt", "--resume", "--epochs", 3,
                                "--no-progress")
    assert status == 0 and "latent_dim': 3" in out, err
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "s.ckpt", "--preset", "tabular",
                                "--model", "sparseautoencoder", "--epochs", 1, "--no-progress")
    assert status == 0 and "'code_dim': 3" in out, err  # no hidden layers: only its code is sized
    status, _, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "q.ckpt", "--preset", "huge")
    assert status == 2 and "invalid choice: 'huge'" in err and len(err.splitlines()) == 1


def test_findings_name_collapse_clamp_and_a_rising_heldout_loss():
    """The three end-of-training findings, each a warning category a user can filter."""
    vaelib.seed_everything(0)
    model = vaelib.VAE(in_dim=3, latent_dim=2)
    with torch.no_grad():  # an encoder that outputs the prior for every x: no dimension is used
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.zero_()
    x = torch.randn(50, 3)
    objective = vaelib.GECO()
    history = History({"loss": [3.0, 2.0, 1.0], "recon": [3.0, 2.0, 1.0], "kl": [0.0] * 3,
                       "alpha": [1.0, ALPHA_CEILING, ALPHA_CEILING]})
    found = findings(model, objective, x, history, heldout_loss=[2.0, 1.5, 1.9])
    assert [f.category for f in found] == [PosteriorCollapseWarning, MultiplierAtClampWarning, HeldoutRisingWarning]
    assert f"2 of 2 latent dimensions are unused: their KL from the prior is below {KL_ACTIVE_THRESHOLD:g}" in \
        found[0].message and "(0 active" in found[0].message and "posterior collapse" in found[0].message
    assert "ceiling 1e+06 since epoch 2" in found[1].message
    assert "rose from 1.5 (epoch 2) to 1.9 (epoch 3)" in found[2].message
    assert findings(model, objective, x, history, heldout_loss=[2.0, 1.5, 1.505])[2:] == []  # within 1%
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=PosteriorCollapseWarning)
        diagnose(model, objective, x, history, heldout_loss=[2.0, 1.5, 1.9])
    assert [w.category for w in caught] == [MultiplierAtClampWarning, HeldoutRisingWarning]
    assert all(issubclass(w.category, VaelibWarning) for w in caught)


USER_MODULE = '''
import torch
from torch import nn
import vaelib
from vaelib.models.base import ModelOutput

@vaelib.register_model
class ResVAE(nn.Module):
    prior = "standard_normal"  # vaelib.models.base's protocol: p(x) = integral of N(z; 0, I) p(x|z) dz
    decoder_kind = "gaussian"

    def __init__(self, in_dim: int, latent_dim: int = 2, width: int = 16):
        super().__init__()
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.encoder = nn.Linear(in_dim, 2 * latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.Tanh(), nn.Linear(width, in_dim))

    def encode(self, x):
        return tuple(self.encoder(x).chunk(2, dim=-1))

    def forward(self, x, noise=None):
        mu, logvar = self.encode(x)
        noise = torch.randn_like(mu) if noise is None else noise
        z = mu + torch.exp(0.5 * logvar) * noise
        return ModelOutput(recon=self.decoder(z), z=z, mu=mu, logvar=logvar)

    @torch.no_grad()
    def sample(self, n, generator=None):
        return self.decoder(torch.randn(n, self.latent_dim, generator=generator))
'''


def test_a_user_model_trains_samples_encodes_and_evaluates_with_import(folder, capsys):
    """Case 6: --import MODULE registers the user's class for every command; evaluate scores it
    with the estimators (ELBO, IWAE), which take any model that follows vaelib.models.base's protocol."""
    (folder / "my_models.py").write_text(USER_MODULE)
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "r.ckpt", "--model", "ResVAE",
                                "--model-arg", "width=8", "--import", "my_models", "--epochs", 1, "--no-progress")
    assert status == 0, err
    assert "trained ResVAE" in out
    for args in (["sample", "r.ckpt", "-n", 3, "--out", "s.csv"], ["encode", "r.ckpt", "--data", "wine_std.npy",
                                                                    "--out", "c.npy"],
                 ["evaluate", "r.ckpt", "--data", "wine_std.npy", "-k", 10, "--json", "-"]):
        status, out, err = run_main(capsys, *args, "--import", "my_models")
        assert status == 0, err
    scores = json.loads(out)  # the estimators score the user's model: it follows the protocol
    model, x = vaelib.load_model("r.ckpt"), load_array("wine_std.npy")
    assert scores["model"] == "ResVAE" and scores["not_a_latent_variable_model"] is None
    for name, k in (("iwae", 10), ("elbo", 1)):
        bound = iwae_bound(model, x, k, generator=torch.Generator().manual_seed(0))
        assert scores[name] == pytest.approx(bound.mean().item(), rel=1e-6)
    assert scores["iwae"] >= scores["elbo"] - 0.05 * abs(scores["elbo"])
    assert np.allclose(np.loadtxt("s.csv", delimiter=",", ndmin=2),
                       model.sample(3, generator=torch.Generator().manual_seed(0)).numpy(), atol=1e-5)
    status, out, err = run_main(capsys, "evaluate", "r.ckpt", "--data", "wine_std.npy", "--import", "no_such_module")
    assert status == 2 and len(err.splitlines()) == 1 and "--import no_such_module: No module named" in err


def test_version_per_point_scores_and_decoder_noise(folder, capsys):
    """--version; evaluate --per-point writes one row per point whose means are the summary;
    sample --with-noise adds the decoder's noise to the means, drawn from the same generator."""
    status, out, _ = run_main(capsys, "--version")
    assert status == 0 and out.strip() == f"vaelib {vaelib.__version__}"
    assert run_main(capsys, "train", "wine_std.npy", "--checkpoint", "w.ckpt", "--epochs", 1,
                    "--no-progress")[0] == 0
    status, out, err = run_main(capsys, "evaluate", "w.ckpt", "--data", "wine_std.npy", "-k", 4,
                                "--per-point", "points.csv", "--json", "w.json")
    assert status == 0, err
    points = np.genfromtxt("points.csv", delimiter=",", names=True)
    scores = json.loads(open("w.json").read())
    assert len(points) == 178 and set(points.dtype.names) == {"squared_error", "elbo", "iwae"}
    for name in points.dtype.names:
        assert points[name].mean() == pytest.approx(scores[name], rel=1e-5)
    status, out, err = run_main(capsys, "sample", "w.ckpt", "-n", 500, "--out", "noisy.npy", "--with-noise")
    assert status == 0 and "with Gaussian noise of variance 0.5" in out, err
    model, generator = vaelib.load_model("w.ckpt"), torch.Generator().manual_seed(0)
    means = model.sample(500, generator=generator)
    expected = means + 0.5**0.5 * torch.randn(means.shape, generator=generator)
    assert torch.allclose(torch.from_numpy(np.load("noisy.npy")), expected)


def test_end_to_end_on_a_labelled_csv_with_mixed_scales(folder, capsys):
    """Done-when: --standardize, --patience and a schedule, then encode, sample, evaluate and
    export; the exported programs run with PyTorch alone and agree with vaelib's model."""
    status, out, err = run_main(capsys, "train", "cancer.csv", "--checkpoint", "run.ckpt", "--drop", "id", "--label",
                                "diagnosis", "--standardize", "--holdout", 0.2, "--patience", 2, "--lr-schedule",
                                "cosine", "--epochs", 60, "--lr", 0.01, "--device", "auto", "--no-progress")
    assert status == 0, err
    history = load_checkpoint("run.ckpt").history
    heldout = history["heldout_loss"]
    assert "stopped early" in out and len(heldout) < 60  # lr 0.01 overfits 455 rows within 60 epochs
    assert min(heldout) == heldout[-1]  # the checkpoint holds the best epoch: the last one it keeps
    assert history["lr"][0] == pytest.approx(0.01) and history["lr"][-1] < history["lr"][0]  # cosine
    assert len(open("run.history.csv").read().splitlines()) == len(heldout) + 1

    for args in (["encode", "run.ckpt", "--data", "cancer.csv", "--out", "codes.npy"],
                 ["sample", "run.ckpt", "-n", 10, "--out", "samples.csv"],
                 ["evaluate", "run.ckpt", "--data", "cancer.csv", "-k", 5, "--json", "scores.json"],
                 ["export", "run.ckpt", "--out", "exported"]):
        status, out, err = run_main(capsys, *args)
        assert status == 0, err
    x = vaelib.readers.load_table("cancer.csv", drop=["id"], label="diagnosis").x
    np.save("x.npy", x.numpy())
    script = ("import sys, numpy as np, torch\n"
              "x = torch.from_numpy(np.load('x.npy'))\n"
              "mu, logvar = torch.export.load('exported.encoder.pt2').module()(x)\n"
              "decoded = torch.export.load('exported.decoder.pt2').module()(mu[:7])\n"
              "np.save('mu.npy', mu.detach().numpy()); np.save('decoded.npy', decoded.detach().numpy())\n"
              "assert 'vaelib' not in sys.modules\n")
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model, scaling = vaelib.load_model("run.ckpt"), load_checkpoint("run.ckpt").scaling
    assert scaling is not None
    with torch.no_grad():
        mu = model.encode(scaling.apply(x))[0]
        decoded = scaling.invert(model.decode(mu[:7]))
    assert torch.allclose(torch.from_numpy(np.load("mu.npy")), mu, atol=1e-5)
    assert torch.allclose(torch.from_numpy(np.load("codes.npy")), mu, atol=1e-6)
    assert torch.allclose(torch.from_numpy(np.load("decoded.npy")), decoded, rtol=1e-5, atol=1e-4)
    drawn = scaling.invert(model.sample(10, generator=torch.Generator().manual_seed(0)))
    assert np.allclose(np.loadtxt("samples.csv", delimiter=","), drawn.numpy(), rtol=1e-5, atol=1e-4)
    scores = json.loads(open("scores.json").read())
    bound = iwae_bound(model, scaling.apply(x), 5, generator=torch.Generator().manual_seed(0))
    assert scores["standardized"] and scores["points"] == 569
    assert scores["iwae"] == pytest.approx((bound - scaling.log_jacobian()).mean().item(), rel=1e-5)


def test_export_to_onnx_matches_vaelib_in_onnxruntime_or_is_refused_in_one_line(folder, capsys):
    """export --format onnx: where onnx and onnxscript are installed, two ONNX models whose outputs
    in onnxruntime are vaelib's (the scaling built in); where they are not (vaelib's requirements
    do not hold them), one line naming the packages, exit 2, and no file."""
    import importlib.util

    assert run_main(capsys, "train", "wine_std.npy", "--checkpoint", "o.ckpt", "--epochs", 2, "--standardize",
                    "--no-progress")[0] == 0
    status, out, err = run_main(capsys, "export", "o.ckpt", "--out", "o", "--format", "onnx")
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):
        assert status == 2 and not out and len(err.splitlines()) == 1, err
        assert "ONNX export needs the onnx" in err and "pip install onnx onnxscript" in err
        assert not list(folder.glob("o.*.onnx"))
        return
    assert status == 0 and "o.encoder.onnx" in out, err
    onnxruntime = pytest.importorskip("onnxruntime")
    model, scaling = vaelib.load_model("o.ckpt"), load_checkpoint("o.ckpt").scaling
    x = load_array("wine_std.npy")[:37] * 3 + 1  # another batch size, off the training scale
    encoder = onnxruntime.InferenceSession("o.encoder.onnx", providers=["CPUExecutionProvider"])
    decoder = onnxruntime.InferenceSession("o.decoder.onnx", providers=["CPUExecutionProvider"])
    mu, logvar = encoder.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected_mu, expected_logvar = model.encode(scaling.apply(x))
        expected_x = scaling.invert(model.decode(expected_mu))
    assert np.allclose(mu, expected_mu, atol=1e-5) and np.allclose(logvar, expected_logvar, atol=1e-5)
    (decoded,) = decoder.run(None, {"z": expected_mu.numpy()})
    assert np.allclose(decoded, expected_x, rtol=1e-5, atol=1e-4)


def test_resume_speaks_in_flags_and_records_a_changed_lr(folder, capsys):
    """Case 9: a changed --holdout is named as such; a changed --lr is recorded, with its epoch."""
    assert run_main(capsys, "train", "wine_std.npy", "--checkpoint", "h.ckpt", "--holdout", 0.1, "--epochs", 2,
                    "--no-progress")[0] == 0
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "h.ckpt", "--resume", "--holdout",
                                0.2, "--epochs", 4, "--no-progress")
    assert status == 2 and err.strip() == ("vaelib train: error: --resume: the run was trained with --holdout 0.1, "
                                           "now --holdout 0.2, which gives other training rows; resume with "
                                           "--holdout 0.1, or start anew with --overwrite")
    status, out, err = run_main(capsys, "train", "wine_std.npy", "--checkpoint", "h.ckpt", "--resume", "--lr", 0.01,
                                "--epochs", 4, "--no-progress")
    assert status == 0 and "--lr 0.01 replaces the run's 0.001 from epoch 3" in err
    settings = json.loads(open("h.settings.json").read())
    assert settings["training"]["lr"] == 0.01
    assert settings["changes"] == [{"from_epoch": 3, "lr": {"was": 0.001, "now": 0.01}}]


def test_fit_stops_early_with_the_best_weights_and_refuses_patience_without_heldout():
    """vaelib.fit's patience: the model and history end at the best held-out epoch."""
    x = torch.randn(120, 4)
    vaelib.seed_everything(0)
    model = vaelib.VAE(in_dim=4, hidden=(64,))
    history = vaelib.fit(model, vaelib.ELBO(), x[:40], epochs=80, lr=0.02, batch_size=10, progress=False,
                         heldout=x[40:], patience=3)
    losses = history["heldout_loss"]
    assert len(losses) < 80 and min(losses) == losses[-1]
    from vaelib.train import heldout_terms
    assert heldout_terms(model, vaelib.ELBO(), x[40:], seed=0)["loss"] == pytest.approx(losses[-1], rel=1e-5)
    with pytest.raises(ValueError, match="give heldout rows too"):
        vaelib.fit(model, vaelib.ELBO(), x, epochs=1, patience=3, progress=False)



def test_a_run_scored_on_heldout_rows_resumes_only_with_them(tmp_path):
    """Every term of a history spans every epoch: a resumed run keeps or leaves out held-out rows
    as the saved one did, else it is refused before anything is loaded."""
    x = torch.randn(60, 3)
    vaelib.seed_everything(0)
    model = vaelib.VAE(in_dim=3)
    vaelib.fit(model, vaelib.ELBO(), x[:40], epochs=1, progress=False, heldout=x[40:], checkpoint=tmp_path / "a.ckpt")
    vaelib.seed_everything(0)
    model = vaelib.VAE(in_dim=3)  # built anew, as a resumed run is
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="was trained with held-out rows scored every epoch"):
        vaelib.fit(model, vaelib.ELBO(), x[:40], epochs=2, progress=False, resume_from=tmp_path / "a.ckpt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    history = vaelib.fit(model, vaelib.ELBO(), x[:40], epochs=2, progress=False, heldout=x[40:],
                         resume_from=tmp_path / "a.ckpt", checkpoint=tmp_path / "a.ckpt")
    assert len(history["heldout_loss"]) == len(history["loss"]) == 2


def test_tiny_columns_are_warned_about_and_an_unused_code_is_named(folder, capsys):
    """Case 2: scikit-learn's diabetes data as it ships (every column's std 0.048) trains, under
    the defaults, to a code the decoder does not use; train says both, one line each."""
    np.save("diabetes.npy", datasets.load_diabetes().data.astype(np.float32))
    status, out, err = run_main(capsys, "train", "diabetes.npy", "--checkpoint", "d.ckpt", "--no-progress")
    assert status == 0, err
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("vaelib train: warning: ") for line in lines)
    assert "standard deviations from 0.0476 to 0.0476" in lines[0] and lines[0].endswith("pass --standardize")
    assert "2 of 2 latent dimensions are unused" in lines[1] and "(posterior collapse)" in lines[1]
    status, out, err = run_main(capsys, "train", "diabetes.npy", "--checkpoint", "s.ckpt", "--standardize",
                                "--no-progress")
    assert status == 0 and "unused" not in err and "unit scale" not in err, err
    assert scale_problem(torch.from_numpy(np.load("digits01.npy"))) is None  # pixels in [0, 1]: no warning


def test_a_scaling_round_trips_through_a_checkpoint_and_bad_ones_are_refused(tmp_path):
    x = torch.tensor([[1.0, 5.0, 100.0], [3.0, 5.0, 300.0]])
    scaling = Scaling.fit(x)
    assert scaling.mean == (2.0, 5.0, 200.0) and scaling.scale == (1.0, 1.0, 100.0)  # a constant column: scale 1
    assert torch.allclose(scaling.invert(scaling.apply(x)), x)
    assert scaling.log_jacobian() == pytest.approx(np.log(100.0))
    with pytest.warns(DataScaleWarning, match="far from unit scale.*; standardise it"):
        warn_scale(x, "standardise it")
    vaelib.save_checkpoint(tmp_path / "m.ckpt", vaelib.VAE(in_dim=3), scaling=scaling)
    assert load_checkpoint(tmp_path / "m.ckpt").scaling == scaling
    vaelib.save_checkpoint(tmp_path / "plain.ckpt", vaelib.VAE(in_dim=3))
    assert load_checkpoint(tmp_path / "plain.ckpt").scaling is None
    for bad in ({"mean": [0.0], "scale": [0.0]}, {"mean": [0.0, 1.0], "scale": [1.0]}, {"mean": ["a"], "scale": [1]},
                {"mean": [0.0]}):
        with pytest.raises(ValueError):
            Scaling.from_dict(bad)
    with pytest.raises(TypeError, match="scaling must be a vaelib.scaling.Scaling of x's 3 columns"):
        vaelib.fit(vaelib.VAE(in_dim=3), vaelib.ELBO(), x, epochs=1, scaling=Scaling((0.0,), (1.0,)), progress=False)
