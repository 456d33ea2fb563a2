"""vaelib.evaluation: held-out error, linear probe, ROC AUC, atom concentration, decoder variance,
active units."""
import pytest
import torch

import vaelib
from vaelib import evaluation
from vaelib.estimators import DEFAULT_DECODER_VARIANCE
from vaelib.losses import squared_error


def test_heldout_error_is_the_mean_squared_error_of_the_reconstruction(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3, latent_dim=2)
    with torch.no_grad():
        expected = squared_error(cosine_small, model(cosine_small).recon)
    assert torch.equal(evaluation.reconstruction_errors(model, cosine_small), expected)
    assert evaluation.heldout_error(model, cosine_small) == pytest.approx(expected.mean().item(), rel=1e-6)


def test_seen_inputs_are_scored_against_the_clean_data(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3, latent_dim=2)
    noisy = cosine_small + 0.5
    with torch.no_grad():
        expected = squared_error(cosine_small, model(noisy).recon).mean().item()
    assert evaluation.heldout_error(model, cosine_small, seen=noisy) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        evaluation.heldout_error(model, cosine_small, seen=noisy[:5])


def test_a_denoising_model_is_scored_without_corruption_and_keeps_its_mode(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.DenoisingAutoencoder(3, latent_dim=2, noise_std=1.0)
    assert model.training
    first = evaluation.heldout_error(model, cosine_small)
    assert model.training and first == evaluation.heldout_error(model, cosine_small)
    model.eval()
    with torch.no_grad():
        clean = squared_error(cosine_small, model(cosine_small).recon).mean().item()
    assert first == pytest.approx(clean, rel=1e-6)


def test_a_vae_is_scored_at_its_posterior_mean_without_touching_the_global_generator(cosine_small):
    vaelib.seed_everything(0)
    vae = vaelib.VAE(3, latent_dim=2)
    state = torch.get_rng_state()
    errors = evaluation.reconstruction_errors(vae, cosine_small)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        assert torch.equal(errors, squared_error(cosine_small, vae.decode(vae.encode(cosine_small)[0])))


def test_linear_probe_reads_classes_that_a_code_separates():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 2
    x = torch.randn(400, 5, generator=g)
    x[:, 0] += 4 * labels                                   # the class is in feature 0 alone
    train, test = slice(0, 300), slice(300, 400)
    args = (x[train], labels[train], x[test], labels[test])
    assert evaluation.linear_probe_accuracy(lambda v: v[:, :1], *args) > 0.95
    assert evaluation.linear_probe_accuracy(lambda v: v[:, 1:], *args) < 0.7
    vaelib.seed_everything(0)
    vae = vaelib.VAE(5, latent_dim=2)
    assert 0 <= evaluation.linear_probe_accuracy(vae.encode, *args) <= 1  # read through mu


def test_roc_auc_agrees_with_scikit_learn_ties_included():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(1)
    positive = torch.rand(300, generator=g) < 0.3
    scores = torch.randint(0, 20, (300,), generator=g).float() + positive * 3.0   # many ties
    assert evaluation.roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert evaluation.roc_auc(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([False, False, True])) == 1.0
    assert evaluation.roc_auc(torch.tensor([1.0, 1.0]), torch.tensor([False, True])) == 0.5
    with pytest.raises(ValueError, match="needs both groups"):
        evaluation.roc_auc(torch.ones(3), torch.zeros(3, dtype=torch.bool))


def test_energy_concentration_of_broad_and_of_peaked_atoms():
    assert evaluation.energy_concentration(torch.ones(4, 64), top=8) == pytest.approx(8 / 64)
    peaked = torch.zeros(4, 64)
    peaked[:, :3] = torch.tensor([3.0, -2.0, 1.0])
    assert evaluation.energy_concentration(peaked, top=8) == pytest.approx(1.0)
    assert evaluation.energy_concentration(peaked, top=1) == pytest.approx(9 / 14)
    with pytest.raises(ValueError, match="at most the number of entries"):
        evaluation.energy_concentration(peaked, top=65)


def test_implied_decoder_variance_of_each_objective():
    assert evaluation.implied_decoder_variance(vaelib.ELBO()) == DEFAULT_DECODER_VARIANCE == 0.5
    assert evaluation.implied_decoder_variance(vaelib.ELBO(beta=0.02)) == pytest.approx(0.01)
    ko = vaelib.KoLagrangian(alpha_init=3.0)
    assert evaluation.implied_decoder_variance(ko) == pytest.approx(3 / (2 * 4))
    assert evaluation.implied_decoder_variance(vaelib.GECO(alpha_init=2.0)) == pytest.approx(1 / 4)
    for objective in (vaelib.SigmaVAE(), vaelib.Reconstruction(), vaelib.ELBO(kl_reduction="sum"),
                      vaelib.KLConstrained(alpha_init=0.0)):
        assert evaluation.implied_decoder_variance(objective) is None, objective


def test_the_implied_variance_makes_the_loss_a_multiple_of_the_negative_elbo(cosine_small):
    """Eq. 7 divided by alpha is R / (2·sigma^2) + KL - delta, whatever the model."""
    objective = vaelib.KoLagrangian(delta=0.1, alpha_init=0.7)
    variance = evaluation.implied_decoder_variance(objective)
    gaps = []
    for seed in (0, 1):
        vaelib.seed_everything(seed)
        vae = vaelib.VAE(3, latent_dim=2)
        with torch.no_grad():
            terms = objective(cosine_small, vae(cosine_small, noise=torch.zeros(len(cosine_small), 2)))
        negative_elbo = terms["recon"] / (2 * variance) + terms["kl"]
        gaps.append((terms["loss"] / objective.alpha.detach() - negative_elbo).item())
    assert gaps == pytest.approx([-0.1, -0.1], abs=1e-5)


def _linear_encoder_vae(mean_weights: torch.Tensor) -> vaelib.VAE:
    """A VAE on 2-D data whose posterior mean is mean_weights @ x (one row per latent dimension)."""
    k = mean_weights.shape[0]
    vae = vaelib.VAE(2, latent_dim=k, hidden=(), activation="identity")
    with torch.no_grad():
        layer = vae.encoder[0]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[:k] = mean_weights
    return vae


def test_active_units_counts_the_dimensions_whose_posterior_mean_varies():
    x = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))
    # dimension 0: mean x_0 (variance 1); 1: constant (0); 2: 0.05 x_1 (0.0025); 3: 0.2 x_1 (0.04)
    vae = _linear_encoder_vae(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.05], [0.0, 0.2]]))
    variance = evaluation.posterior_mean_variance(vae, x)
    expected = torch.tensor([x[:, 0].var(correction=0).item(), 0.0,
                             0.05**2 * x[:, 1].var(correction=0).item(),
                             0.2**2 * x[:, 1].var(correction=0).item()], dtype=torch.float64)
    assert torch.allclose(variance, expected, rtol=1e-5, atol=1e-12)
    assert evaluation.active_units(vae, x) == 2  # the default threshold 0.01 keeps 0 and 3
    assert evaluation.active_units(vae, x, threshold=0.001) == 3
    assert evaluation.active_units(vae, x, threshold=2.0) == 0


def test_active_units_refuses_a_model_without_a_gaussian_encoder_and_bad_input():
    with pytest.raises(TypeError, match="mu, logvar"):
        evaluation.active_units(vaelib.Autoencoder(2, latent_dim=1), torch.randn(5, 2))
    vae = vaelib.VAE(2, latent_dim=1)
    with pytest.raises(ValueError, match="at least 2 points"):
        evaluation.active_units(vae, torch.randn(1, 2))
    with pytest.raises(ValueError, match="threshold"):
        evaluation.active_units(vae, torch.randn(5, 2), threshold=0.0)
