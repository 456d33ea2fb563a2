"""The VAE family of objectives (vaelib.objectives): GECO, the sigma-VAE, the multiplier rules and
the registry by name; hand computations and the direction each multiplier moves."""
import math

import pytest
import torch

import vaelib
from vaelib.models import ModelOutput
from vaelib.objectives import ALPHA_CEILING, ALPHA_FLOOR, make_objective, update_multiplier


def _output(recon_per_point: float, kl_per_point: float, n: int = 4):
    """x = 0 and a reconstruction whose squared error is recon_per_point per point (3 features);
    mu such that the KL is kl_per_point per point (logvar = 0)."""
    x = torch.zeros(n, 3)
    recon = torch.full((n, 3), math.sqrt(recon_per_point / 3))
    mu = torch.full((n, 1), math.sqrt(2 * kl_per_point))
    return x, ModelOutput(recon=recon, z=mu, mu=mu, logvar=torch.zeros(n, 1))


def _step(objective, x, out, lr=0.1):
    """One step with the hooks in the order vaelib.fit calls them (SGD on the trainer's parameters)."""
    params = [p for _, p in objective.trainer_parameters()]
    opt = torch.optim.SGD(params, lr=lr) if params else None
    terms = objective(x, out)
    if params:
        terms["loss"].backward()
    objective.before_step()
    if opt:
        opt.step()
    objective.after_step({k: v.detach() for k, v in terms.items()})
    return terms


def test_geco_loss_is_kl_plus_lambda_times_the_reconstruction_violation():
    x, out = _output(recon_per_point=0.3, kl_per_point=2.0)
    terms = vaelib.GECO(kappa=0.1, alpha_init=5.0)(x, out)
    assert terms["loss"].item() == pytest.approx(2.0 + 5.0 * (0.3 - 0.1), rel=1e-5)
    assert terms["constraint"].item() == pytest.approx(0.2, rel=1e-5)
    assert terms["alpha"].item() == 5.0


@pytest.mark.parametrize("recon, direction", [(0.3, +1), (0.02, -1)])
def test_geco_multiplier_grows_while_the_constraint_is_violated_and_shrinks_once_it_holds(recon, direction):
    objective = vaelib.GECO(kappa=0.1, alpha_init=1.0, ema=0.5, rate=2.0)
    x, out = _output(recon_per_point=recon, kl_per_point=1.0)
    assert not objective.alpha.requires_grad  # not the optimiser's: the multiplicative rule moves it
    alphas = [1.0]
    for _ in range(3):
        _step(objective, x, out)
        alphas.append(objective.alpha.item())
    h = recon - 0.1
    # first step: the average starts at h itself; then ema·avg + (1 - ema)·h = h again (constant h)
    assert alphas[1] == pytest.approx(math.exp(2.0 * h), rel=1e-5)
    assert alphas[3] == pytest.approx(math.exp(3 * 2.0 * h), rel=1e-5)
    assert all((b - a) * direction > 0 for a, b in zip(alphas, alphas[1:]))
    assert objective.updates.item() == 3 and objective.constraint_average.item() == pytest.approx(h, rel=1e-5)


def test_geco_multiplier_stays_inside_its_domain():
    objective = vaelib.GECO(kappa=0.0, alpha_init=1.0, rate=1e4)
    x, out = _output(recon_per_point=1.0, kl_per_point=1.0)
    _step(objective, x, out)
    assert objective.alpha.item() == pytest.approx(ALPHA_CEILING)
    objective = vaelib.GECO(kappa=5.0, alpha_init=1.0, rate=1e4)
    _step(objective, x, out)
    assert objective.alpha.item() == pytest.approx(ALPHA_FLOOR)
    with pytest.raises(ValueError, match="alpha_init must lie in"):
        vaelib.GECO(alpha_init=0.0)


def test_the_geco_average_is_a_moving_average():
    alpha, average, count = torch.tensor(2.0), torch.tensor(0.0), torch.tensor(0.0)
    for h, expected_average in [(1.0, 1.0), (0.0, 0.9), (0.0, 0.81)]:
        alpha_next, average, count = update_multiplier("geco", alpha, alpha, torch.tensor(h), average, count,
                                                       ema=0.9, rate=0.5)
        assert average.item() == pytest.approx(expected_average)
        assert alpha_next.item() == pytest.approx(alpha.item() * math.exp(0.5 * expected_average))
        alpha = alpha_next


def test_sigma_vae_loss_is_the_gaussian_nll_under_the_best_variance():
    x, out = _output(recon_per_point=0.3, kl_per_point=0.7)
    terms = vaelib.SigmaVAE()(x, out)
    variance = 0.3 / 3  # sigma^2 = R / D
    nll = 1.5 * math.log(2 * math.pi * variance) + 0.3 / (2 * variance)
    assert terms["nll"].item() == pytest.approx(nll, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(nll + 0.7, rel=1e-5)
    assert terms["sigma"].item() == pytest.approx(math.sqrt(variance), rel=1e-5)
    # the variance is the best one: the NLL at any other sigma is larger
    for other in (0.5 * variance, 2 * variance):
        assert 1.5 * math.log(2 * math.pi * other) + 0.3 / (2 * other) > nll


def test_sigma_vae_gradient_is_a_beta_vae_with_beta_two_sigma_squared():
    # d loss / d R = 1 / (2 sigma^2) = D / (2 R): the same direction as R + (2 R / D)·KL
    recon = torch.tensor(0.3, requires_grad=True)
    terms = vaelib.SigmaVAE().combine(recon, torch.tensor(1.0), batch_size=4, features=3)
    terms["loss"].backward()
    assert recon.grad.item() == pytest.approx(3 / (2 * 0.3), rel=1e-5)


def test_sigma_vae_variance_floor_and_bernoulli_refusal():
    x, out = _output(recon_per_point=1e-12, kl_per_point=0.1)
    terms = vaelib.SigmaVAE(min_variance=1e-4)(x, out)
    assert terms["sigma"].item() == pytest.approx(1e-2)
    logits = ModelOutput(recon=torch.zeros(4, 3), z=torch.zeros(4, 1), mu=torch.zeros(4, 1),
                         logvar=torch.zeros(4, 1), recon_is_logits=True)
    with pytest.raises(ValueError, match="the calibrated \\(sigma-VAE\\) likelihood is Gaussian"):
        vaelib.SigmaVAE()(torch.zeros(4, 3), logits)


def test_elbo_with_a_summed_kl_weighs_it_by_the_batch():
    x, out = _output(recon_per_point=0.3, kl_per_point=0.5)
    terms = vaelib.ELBO(kl_reduction="sum")(x, out)
    assert terms["kl"].item() == pytest.approx(4 * 0.5)
    assert terms["loss"].item() == pytest.approx(0.3 + 4 * 0.5, rel=1e-5)


@pytest.mark.parametrize("rule, alpha, before, expected", [
    ("reverse", -0.1, 0.2, 0.5), ("reverse", 0.1, 0.2, 0.1), ("project", -0.1, 0.2, 0.0),
    ("ascent", -0.3, 0.2, 0.0), ("fixed", 0.7, 0.7, 0.7)])
def test_the_gradient_rules_keep_alpha_non_negative(rule, alpha, before, expected):
    (after,) = update_multiplier(rule, torch.tensor(alpha), torch.tensor(before), torch.tensor(0.0))
    assert after.item() == pytest.approx(expected)


def test_objectives_by_name():
    assert isinstance(make_objective("geco", kappa=0.2), vaelib.GECO)
    assert make_objective("elbo", beta=4.0).beta == 4.0
    with pytest.raises(ValueError, match="objective must be one of"):
        make_objective("wgan")
    with pytest.raises(ValueError, match="objective 'elbo' has no setting 'kappa'; its settings are"):
        make_objective("elbo", kappa=0.1)


def test_fit_leaves_the_callers_random_state_alone():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    vaelib.seed_everything(1)
    model = vaelib.VAE(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    history = vaelib.fit(model, vaelib.ELBO(), x, epochs=2, batch_size=16, seed=5, progress=False)
    assert torch.equal(torch.rand(3), expected)
    vaelib.seed_everything(1)
    again = vaelib.VAE(3)
    history_again = vaelib.fit(again, vaelib.ELBO(), x, epochs=2, batch_size=16, seed=5, progress=False)
    assert history.terms == history_again.terms  # and the run itself stays deterministic
