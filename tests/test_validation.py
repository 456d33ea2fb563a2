"""Every public entry point answers a bad input with an error that names the argument, the value
seen and what is expected. One table: (case, call, error type, expected message)."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import vaelib
from vaelib import data, engine, estimators, losses, nn as vnn, pca, probability
from vaelib.experiments.ko2023 import Ko2023Config

X = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
NAN_ROW = torch.tensor([[0.0, float("nan"), 1.0], [0.0, 0.0, 0.0]])
ACTIVATION_CHOICES = "['elu', 'identity', 'ptanh', 'relu', 'sigmoid', 'tanh']"


def _fit(**kwargs):
    """fit with good defaults, one argument replaced."""
    args = {"model": vaelib.VAE(3), "objective": vaelib.ELBO(), "x": X, "progress": False, **kwargs}
    return vaelib.fit(args.pop("model"), args.pop("objective"), args.pop("x"), **args)


CASES = [
    # data
    ("cosine n=0", lambda: data.cosine_surface(n=0), ValueError, "n must be a positive integer, got 0"),
    ("cosine n=2.5", lambda: data.cosine_surface(n=2.5), TypeError, "n must be an int, got float (2.5)"),
    ("cosine noise<0", lambda: data.cosine_surface(noise=-1), ValueError, "noise must be a finite number >= 0, got -1"),
    ("cosine noise=nan", lambda: data.cosine_surface(noise=float("nan")), ValueError,
     "noise must be a finite number >= 0, got nan"),
    ("cosine half_width=0", lambda: data.cosine_surface(half_width=0), ValueError, "half_width must be > 0, got 0.0"),
    ("cosine seed str", lambda: data.cosine_surface(seed="a"), TypeError, "seed must be an int, got str ('a')"),
    ("cosine seed<0", lambda: data.cosine_surface(seed=-1), ValueError,
     "seed must be an integer in [0, 2**63), got -1"),
    ("read_idx missing", lambda: data.read_idx("/nonexistent/train.idx"), FileNotFoundError,
     "read_idx: no file at /nonexistent/train.idx"),
    ("read_idx int path", lambda: data.read_idx(3), TypeError,
     "read_idx: path must be a str or os.PathLike, got int (3)"),
    ("seed_everything str", lambda: vaelib.seed_everything("0"), TypeError, "seed must be an int, got str ('0')"),
    # building blocks
    ("activation unknown", lambda: vnn.activation("swish"), ValueError,
     f"activation must be one of {ACTIVATION_CHOICES}, got 'swish'"),
    ("mlp one size", lambda: vnn.mlp([3]), ValueError, "sizes must list at least an input and an output size, got [3]"),
    ("mlp zero size", lambda: vnn.mlp([3, 0, 2]), ValueError, "sizes[1] must be a positive integer, got 0"),
    ("mlp final_activation", lambda: vnn.mlp([3, 2], final_activation="swish"), ValueError,
     f"final_activation must be one of {ACTIVATION_CHOICES}, got 'swish'"),
    ("ptanh a=nan", lambda: vnn.ParametricTanh(a=float("nan")), ValueError, "a must be a finite number, got nan"),
    ("ptanh b=str", lambda: vnn.ParametricTanh(b="1"), TypeError, "b must be a number, got str ('1')"),
    ("corrupt mask_prob=1", lambda: vnn.corrupt(X, mask_prob=1), ValueError,
     "mask_prob must be < 1 (1 would erase every input), got 1"),
    # models
    ("AE in_dim=0", lambda: vaelib.Autoencoder(0), ValueError, "in_dim must be a positive integer, got 0"),
    ("AE in_dim float", lambda: vaelib.Autoencoder(3.0), TypeError, "in_dim must be an int, got float (3.0)"),
    ("AE latent_dim<0", lambda: vaelib.Autoencoder(3, latent_dim=-1), ValueError,
     "latent_dim must be a positive integer, got -1"),
    ("AE hidden int", lambda: vaelib.Autoencoder(3, hidden=32), TypeError,
     "hidden must be a list or tuple of positive ints, got int (32); write a single size as (32,)"),
    ("AE hidden zero", lambda: vaelib.Autoencoder(3, hidden=(16, 0)), ValueError,
     "hidden[1] must be a positive integer, got 0"),
    ("AE activation unknown", lambda: vaelib.Autoencoder(3, activation="swish"), ValueError,
     f"activation must be one of {ACTIVATION_CHOICES}, got 'swish'"),
    ("VAE decoder unknown", lambda: vaelib.VAE(3, decoder="poisson"), ValueError,
     "decoder must be one of ['bernoulli', 'gaussian'], got 'poisson'"),
    ("VAE x features", lambda: vaelib.VAE(3)(torch.randn(5, 4)), ValueError,
     "x must have 3 features per row, got 4 (shape (5, 4))"),
    ("VAE x 1-D", lambda: vaelib.VAE(3)(torch.randn(3)), ValueError, "x must have shape (n, d), got shape (3,)"),
    ("VAE x int dtype", lambda: vaelib.VAE(3)(torch.ones(5, 3, dtype=torch.int64)), TypeError,
     "x must be a floating-point tensor, got dtype torch.int64; use x.float()"),
    ("VAE x empty", lambda: vaelib.VAE(3)(torch.empty(0, 3)), ValueError,
     "x is empty: shape (0, 3); it needs at least one row"),
    ("VAE x numpy", lambda: vaelib.VAE(3)(np.zeros((5, 3), dtype=np.float32)), TypeError,
     "x must be a torch.Tensor of shape (n, d), got ndarray; convert with torch.as_tensor"),
    ("VAE decode z features", lambda: vaelib.VAE(3).decode(torch.randn(5, 3)), ValueError,
     "z must have 2 features per row, got 3 (shape (5, 3))"),
    ("VAE sample n=0", lambda: vaelib.VAE(3).sample(0), ValueError, "n must be a positive integer, got 0"),
    ("SparseAE code_dim=0", lambda: vaelib.SparseAutoencoder(3, code_dim=0), ValueError,
     "code_dim must be a positive integer, got 0"),
    ("DenoisingAE no noise", lambda: vaelib.DenoisingAutoencoder(3), ValueError,
     "a denoising autoencoder needs some corruption: set noise_std > 0 or mask_prob > 0"),
    ("ConvAE image_shape", lambda: vaelib.ConvAutoencoder(image_shape=(7, 7)), ValueError,
     "image_shape (7, 7) must be divisible by 4"),
    # objectives and losses
    ("ELBO beta<0", lambda: vaelib.ELBO(beta=-1), ValueError, "beta must be a finite number >= 0, got -1"),
    ("ELBO beta=inf", lambda: vaelib.ELBO(beta=float("inf")), ValueError, "beta must be a finite number >= 0, got inf"),
    ("Ko delta<0", lambda: vaelib.KoLagrangian(delta=-0.1), ValueError, "delta must be a finite number >= 0, got -0.1"),
    ("Ko alpha_init<0", lambda: vaelib.KoLagrangian(alpha_init=-1), ValueError,
     "alpha_init must be a finite number >= 0, got -1"),
    ("Ko alpha_rule unknown", lambda: vaelib.KoLagrangian(alpha_rule="bogus"), ValueError,
     "alpha_rule must be one of ['ascent', 'fixed', 'geco', 'project', 'reverse'], got 'bogus'"),
    ("Ko kl_reduction unknown", lambda: vaelib.KoLagrangian(kl_reduction="max"), ValueError,
     "kl_reduction must be one of ['mean', 'sum'], got 'max'"),
    ("Ko on an autoencoder", lambda: vaelib.KoLagrangian()(X, vaelib.Autoencoder(3)(X)), ValueError,
     "this objective needs a model with a Gaussian encoder (a VAE): the model output has no mu/logvar"),
    ("Reconstruction shapes", lambda: vaelib.Reconstruction()(torch.randn(20, 4), vaelib.Autoencoder(3)(X)), ValueError,
     "x and x_hat must have the same shape, got (20, 4) and (20, 3)"),
    ("squared_error shapes", lambda: losses.squared_error(torch.zeros(4, 3), torch.zeros(1, 3)), ValueError,
     "x and x_hat must have the same shape, got (4, 3) and (1, 3); a silent broadcast here would compute"),
    ("gaussian_kl shapes", lambda: losses.gaussian_kl(torch.zeros(4, 2), torch.zeros(4, 3)), ValueError,
     "mu and logvar must have the same shape, got (4, 2) and (4, 3)"),
    ("kl_sparsity rho=2", lambda: losses.kl_sparsity(torch.rand(4, 3), 2.0), ValueError,
     "rho must lie strictly between 0 and 1, got 2.0"),
    # PCA and estimators
    ("fit_pca k too big", lambda: pca.fit_pca(X, 4), ValueError, "k must be at most the number of features (3), got 4"),
    ("fit_pca k=0", lambda: pca.fit_pca(X, 0), ValueError, "k must be a positive integer, got 0"),
    ("fit_pca x NaN", lambda: pca.fit_pca(NAN_ROW, 1), ValueError,
     "x holds non-finite values (NaN or inf) in 1 of 2 rows"),
    ("PCA.encode features", lambda: pca.fit_pca(X, 2).encode(torch.randn(5, 4)), ValueError,
     "x must have 3 features per row, got 4 (shape (5, 4))"),
    ("fit_ppca k=d", lambda: pca.fit_ppca(X, 3), ValueError,
     "k must be smaller than the number of features (3), got 3"),
    ("iwae k=0", lambda: estimators.iwae_bound(vaelib.VAE(3), X, 0), ValueError, "k must be a positive integer, got 0"),
    ("iwae decoder_variance<0", lambda: estimators.iwae_bound(vaelib.VAE(3), X, 5, decoder_variance=-1), ValueError,
     "decoder_variance must be"),
    ("iwae autoencoder", lambda: estimators.iwae_bound(vaelib.Autoencoder(3), X, 5), TypeError,
     "the estimators score unconditional latent-variable models (vaelib.models.base's protocol, as vaelib.VAE "
     "follows it): the Autoencoder model lacks prior = 'standard_normal'"),
    ("iwae x features", lambda: estimators.iwae_bound(vaelib.VAE(3), torch.randn(5, 4), 5), ValueError,
     "x must have 3 features per row, got 4"),
    ("iwae_curve empty ks", lambda: estimators.iwae_curve(vaelib.VAE(3), X, []), TypeError,
     "ks must be a non-empty list or tuple of positive ints, got []"),
    ("marginal_ll k=0", lambda: estimators.marginal_log_likelihood(vaelib.VAE(3), X, 0), ValueError,
     "k must be a positive integer, got 0"),
    ("ppca_as_vae not a PPCA", lambda: estimators.ppca_as_vae("x"), TypeError,
     "ppca must be a vaelib.pca.PPCA (from fit_ppca), got str"),
    # fit
    ("fit model str", lambda: _fit(model="vae"), TypeError,
     "model must be a torch.nn.Module (e.g. vaelib.VAE), got str"),
    ("fit objective loss fn", lambda: _fit(objective=torch.nn.MSELoss()), TypeError,
     "objective must be a vaelib.objectives.Objective, got MSELoss"),
    ("fit x list", lambda: _fit(x=[[1.0, 2.0, 3.0]]), TypeError, "x must be a torch.Tensor of shape (n, d), got list"),
    ("fit x NaN", lambda: _fit(x=NAN_ROW), ValueError, "x holds non-finite values (NaN or inf) in 1 of 2 rows"),
    ("fit x empty", lambda: _fit(x=torch.empty(0, 3)), ValueError, "x is empty: shape (0, 3)"),
    ("fit x features", lambda: _fit(x=torch.randn(5, 4)), ValueError, "x must have 3 features per row, got 4"),
    ("fit epochs=0", lambda: _fit(epochs=0), ValueError, "epochs must be a positive integer, got 0"),
    ("fit epochs bool", lambda: _fit(epochs=True), TypeError, "epochs must be an int, got bool (True)"),
    ("fit batch_size<0", lambda: _fit(batch_size=-1), ValueError, "batch_size must be a positive integer, got -1"),
    ("fit lr=0", lambda: _fit(lr=0.0), ValueError, "lr must be > 0, got 0.0"),
    ("fit lr<0", lambda: _fit(lr=-1), ValueError, "lr must be > 0, got -1.0"),
    ("fit lr=nan", lambda: _fit(lr=float("nan")), ValueError, "lr must be a finite number > 0, got nan"),
    ("fit optimizer unknown", lambda: _fit(optimizer="lbfgs"), ValueError,
     "optimizer must be one of ['adam', 'sgd'], got 'lbfgs'"),
    ("fit seed float", lambda: _fit(seed=1.5), TypeError, "seed must be an int, got float (1.5)"),
    ("fit seed<0", lambda: _fit(seed=-1), ValueError, "seed must be an integer in [0, 2**63), got -1"),
    ("fit device unknown", lambda: _fit(device="gpu"), ValueError,
     "device must be a torch.device or a name such as 'cpu' or 'cuda:0', got 'gpu'"),
    ("fit on_epoch_end", lambda: _fit(on_epoch_end=3), TypeError,
     "on_epoch_end must be a function (epoch, means) -> None or None, got int"),
    ("fit checkpoint folder", lambda: _fit(checkpoint="/nonexistent/run.ckpt"), FileNotFoundError,
     "checkpoint='/nonexistent/run.ckpt': the folder /nonexistent does not exist; create it first"),
    ("fit checkpoint int", lambda: _fit(checkpoint=5), TypeError,
     "checkpoint must be a file path (str or os.PathLike) or None, got int"),
    ("fit checkpoint_every=0", lambda: _fit(checkpoint_every=0), ValueError,
     "checkpoint_every must be a positive integer, got 0"),
    ("fit resume_from missing", lambda: _fit(resume_from="/nonexistent/run.ckpt"), FileNotFoundError,
     "resume_from='/nonexistent/run.ckpt': no checkpoint file there"),
    ("fit nothing to train", lambda: _fit(model=torch.nn.Identity(), objective=vaelib.Reconstruction()), ValueError,
     "model (Identity) and objective (Reconstruction) have no trainable parameters: there is nothing to fit"),
    ("pretrain epochs=0", lambda: vaelib.pretrain_layerwise(vaelib.Autoencoder(3), X, epochs=0), ValueError,
     "epochs must be a positive integer, got 0"),
    # the batched engine and Ko & Ko's experiment
    ("fit_batched no models", lambda: engine.fit_batched([], [], X, seeds=[]), ValueError,
     "models is empty; give at least one model to train"),
    ("fit_batched autoencoder", lambda: engine.fit_batched([vaelib.Autoencoder(3)], [vaelib.ELBO()], X, seeds=[0]),
     ValueError, "this objective needs a model with a Gaussian encoder (a VAE)"),
    ("fit_batched seed<0", lambda: engine.fit_batched([vaelib.VAE(3)], [vaelib.ELBO()], X, seeds=[-1]), ValueError,
     "seeds[0] must be an integer in [0, 2**63), got -1"),
    ("fit_batched x NaN", lambda: engine.fit_batched([vaelib.VAE(3)], [vaelib.ELBO()], NAN_ROW, seeds=[0]),
     ValueError, "x holds non-finite values (NaN or inf) in 1 of 2 rows"),
    ("Ko2023Config delta<0", lambda: Ko2023Config(delta=-1), ValueError, "delta must be a finite number >= 0, got -1"),
    ("Ko2023Config alpha_init<0", lambda: Ko2023Config(alpha_init=-1), ValueError,
     "alpha_init must be a finite number >= 0, got -1"),
    ("Ko2023Config alpha_rule", lambda: Ko2023Config(alpha_rule="bogus"), ValueError,
     "alpha_rule must be one of ['ascent', 'fixed', 'geco', 'project', 'reverse'], got 'bogus'"),
    ("Ko2023Config runs=0", lambda: Ko2023Config(runs=0), ValueError, "runs must be a positive integer, got 0"),
    ("entropy negative p", lambda: probability.entropy(torch.tensor([0.5, -0.5, 1.0])), ValueError,
     "p must hold finite, non-negative probabilities; its smallest entry is -0.5"),
    # checkpoints
    ("load_checkpoint missing", lambda: vaelib.load_checkpoint("/nonexistent/run.ckpt"), FileNotFoundError,
     "no checkpoint file at /nonexistent/run.ckpt"),
    ("save_checkpoint folder", lambda: vaelib.save_checkpoint("/nonexistent/run.ckpt", vaelib.VAE(3)),
     FileNotFoundError, "cannot write the checkpoint /nonexistent/run.ckpt: the folder /nonexistent does not exist"),
]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_input_gets_a_message_naming_argument_value_and_expectation(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


class _NoLoss(vaelib.objectives.Objective):
    def forward(self, x, out):
        return {"recon": (x - out.recon).pow(2).sum(-1).mean()}


class _PerPointLoss(vaelib.objectives.Objective):
    def forward(self, x, out):
        return {"loss": (x - out.recon).pow(2).sum(-1)}


def test_fit_explains_an_objective_that_breaks_the_interface():
    with pytest.raises(ValueError, match=re.escape("_NoLoss must return a dict of named terms with a 'loss' entry, "
                                                   "got ['recon']")):
        vaelib.fit(vaelib.Autoencoder(3), _NoLoss(), X, progress=False)
    with pytest.raises(ValueError, match=re.escape("_PerPointLoss returned the term 'loss' as (20,); every term must "
                                                   "be a scalar tensor")):
        vaelib.fit(vaelib.Autoencoder(3), _PerPointLoss(), X, batch_size=20, progress=False)


def test_history_names_the_terms_it_has():
    history = vaelib.History({"loss": [1.0], "recon": [0.5]})
    with pytest.raises(KeyError, match=re.escape("no term 'kl' in this history; it logs ['loss', 'recon']")):
        history["kl"]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--lr", "nan"],
     "vaelib reproduce: error: argument --lr: expected a positive finite number, got nan"),
    (["reproduce", "--out", __file__], "vaelib reproduce: error: out_dir"),
])
def test_the_command_line_answers_bad_arguments_with_one_line_and_status_2(argv, message):
    done = subprocess.run([sys.executable, "-m", "vaelib", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
