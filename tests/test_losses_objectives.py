import pytest
import torch
from torch.distributions import Normal, kl_divergence

import vaelib
from vaelib import losses
from vaelib.models import ModelOutput
from vaelib.pca import fit_pca


def test_reconstruction_error_is_frobenius_over_n():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    x_hat = torch.zeros(2, 3)
    # ||Z - Z~||_F^2 = 0 + 9 = 9; divided by n = 2 points.
    assert losses.reconstruction_error(x, x_hat).item() == pytest.approx(4.5)
    assert losses.squared_error(x, x_hat).tolist() == [0.0, 9.0]


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"x and x_hat must have the same shape, got \(4, 3\) and \(1, 3\)"):
        losses.reconstruction_error(torch.zeros(4, 3), torch.zeros(1, 3))


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    assert torch.allclose(losses.gaussian_kl(mu, logvar), expected, atol=1e-5)
    assert losses.gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 2)).abs().max() == 0


def test_bernoulli_nll_matches_hand_computation():
    logits = torch.tensor([[0.0, 2.0]])
    x = torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(logits)
    expected = -(torch.log(p[0, 0]) + torch.log(1 - p[0, 1]))
    assert losses.binary_cross_entropy(logits, x).item() == pytest.approx(expected.item(), rel=1e-6)


def test_gaussian_log_density_matches_normal():
    x, mean = torch.randn(5, 3), torch.randn(5, 3)
    expected = Normal(mean, 0.7).log_prob(x).sum(dim=1)
    got = losses.gaussian_log_density(x, mean, 2 * torch.log(torch.tensor(0.7)))
    assert torch.allclose(got, expected, atol=1e-5)


def test_sparsity_penalties():
    h = torch.full((10, 4), 0.05)
    assert losses.kl_sparsity(h, rho=0.05).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.kl_sparsity(torch.full((10, 4), 0.5), rho=0.05).item() > 0
    assert losses.l1_activity(torch.tensor([[1.0, -2.0], [0.0, 3.0]])).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="rho must lie strictly between 0 and 1, got 1.5"):
        losses.kl_sparsity(h, rho=1.5)


def test_elbo_terms_add_up():
    x = torch.randn(8, 3)
    out = ModelOutput(recon=torch.zeros(8, 3), z=torch.zeros(8, 2), mu=torch.ones(8, 2), logvar=torch.zeros(8, 2))
    terms = vaelib.ELBO()(x, out)
    assert set(terms) == {"loss", "recon", "kl"}
    assert terms["recon"].item() == pytest.approx(x.pow(2).sum(1).mean().item(), rel=1e-6)
    assert terms["kl"].item() == pytest.approx(1.0)  # 0.5 * (1 + 1) per point
    assert terms["loss"].item() == pytest.approx(terms["recon"].item() + 1.0, rel=1e-6)
    assert vaelib.ELBO(beta=4.0)(x, out)["loss"].item() == pytest.approx(terms["recon"].item() + 4.0, rel=1e-6)


def test_elbo_needs_a_gaussian_encoder():
    out = ModelOutput(recon=torch.zeros(2, 3), z=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="needs a model with a Gaussian encoder"):
        vaelib.ELBO()(torch.zeros(2, 3), out)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got -1"):
        vaelib.ELBO(beta=-1)


def test_pca_recovers_a_plane_and_its_error_is_the_dropped_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g) * torch.tensor([3.0, 1.0, 0.1])
    pca = fit_pca(x, 2)
    err = losses.reconstruction_error(x, pca.reconstruct(x)).item()
    assert err == pytest.approx(pca.explained_variance[2].item(), rel=1e-3)
    assert abs(pca.components[0, 0].item()) > 0.99
    with pytest.raises(ValueError, match="k must be at most the number of features"):
        fit_pca(x, 4)
