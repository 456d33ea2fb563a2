"""vaelib.gradients: the score-function and the reparameterised estimators of a VAE encoder's gradient."""
import math

import pytest
import torch

import vaelib
from vaelib.gradients import encoder_gradient_samples

DECODER_VARIANCE = 0.5


def _linear_vae() -> vaelib.VAE:
    """A VAE with a linear encoder and a linear Gaussian decoder, in float64."""
    vaelib.seed_everything(3)
    return vaelib.VAE(in_dim=3, latent_dim=2, hidden=(), activation="identity").double()


def _exact_encoder_gradient(model: vaelib.VAE, x: torch.Tensor) -> torch.Tensor:
    """The gradient of (1/M) sum_i E_q[log p(x_i | z)] for a linear Gaussian decoder x_hat = W z + b,
    where the expectation has a closed form: -(||x - W mu - b||^2 + sum_j sigma_j^2 ||W_j||^2) / (2 v)
    minus the normaliser (d / 2) log(2 pi v)."""
    weights = list(model.encoder.parameters())
    mu, logvar = model.encode(x)
    decoder = model.decoder[0]
    residual = (x - decoder(mu)).pow(2).sum(dim=1)
    spread = (logvar.exp() * decoder.weight.pow(2).sum(dim=0)).sum(dim=1)
    expected = -(residual + spread) / (2 * DECODER_VARIANCE) - 1.5 * math.log(2 * math.pi * DECODER_VARIANCE)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(expected.mean(), weights)])


@pytest.fixture(scope="module")
def samples():
    model = _linear_vae()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = {name: encoder_gradient_samples(model, x, 3000, name, torch.Generator().manual_seed(1))
             for name in ("reparameterisation", "score")}
    return model, x, draws


@pytest.mark.parametrize("estimator", ["reparameterisation", "score"])
def test_both_estimators_are_unbiased_where_the_gradient_is_known(samples, estimator):
    model, x, draws = samples
    exact = _exact_encoder_gradient(model, x)
    g = draws[estimator]
    assert g.shape == (3000, sum(p.numel() for p in model.encoder.parameters()))
    z_scores = (g.mean(dim=0) - exact) / (g.std(dim=0) / math.sqrt(len(g)) + 1e-12)
    assert z_scores.abs().max() < 4.5, z_scores


def test_the_score_function_estimator_is_far_noisier(samples):
    _, _, draws = samples
    ratio = draws["score"].var(dim=0).sum() / draws["reparameterisation"].var(dim=0).sum()
    assert ratio > 10, ratio


def test_the_model_is_left_as_it_was():
    model = _linear_vae()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    encoder_gradient_samples(model, torch.rand(5, 3, dtype=torch.float64), 4, "score")
    encoder_gradient_samples(model, torch.rand(5, 3, dtype=torch.float64), 4, "reparameterisation")
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None, name


def test_a_generator_makes_the_draws_reproducible_and_bernoulli_decoders_work():
    vaelib.seed_everything(0)
    model = vaelib.VAE(in_dim=6, latent_dim=2, hidden=(5,), decoder="bernoulli")
    x = torch.rand(4, 6)
    first, second = (encoder_gradient_samples(model, x, 3, "score", torch.Generator().manual_seed(7))
                     for _ in range(2))
    assert torch.equal(first, second) and torch.isfinite(first).all()


def test_bad_arguments_are_refused_with_a_clear_message():
    model = _linear_vae()
    x = torch.rand(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="estimator"):
        encoder_gradient_samples(model, x, 3, "finite-difference")
    with pytest.raises(ValueError, match="n_samples"):
        encoder_gradient_samples(model, x, 0, "score")
    with pytest.raises(TypeError, match="vaelib.VAE"):
        encoder_gradient_samples(vaelib.Autoencoder(3), x.float(), 3, "score")
    with pytest.raises(ValueError, match="features"):
        encoder_gradient_samples(model, torch.rand(4, 5, dtype=torch.float64), 3, "score")
