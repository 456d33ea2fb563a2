"""Tests for the Part II helpers: vaelib.probability and the latent-space plots."""
import math

import matplotlib
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vaelib  # noqa: E402
from vaelib import plots, probability  # noqa: E402
from vaelib.losses import gaussian_kl  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- discrete information measures -------------------------------------------------------------

def test_entropy_of_coins_and_dice_in_bits_and_nats():
    assert probability.entropy(torch.tensor([0.5, 0.5]), base=2).item() == pytest.approx(1.0)
    assert probability.entropy(torch.full((6,), 1 / 6)).item() == pytest.approx(math.log(6))
    assert probability.entropy(torch.tensor([1.0, 0.0])).item() == 0.0  # 0 log 0 counts as 0
    assert probability.self_information(torch.tensor(0.25), base=2).item() == pytest.approx(2.0)


def test_self_information_of_independent_events_adds():
    p, q = torch.tensor(0.3), torch.tensor(0.6)
    joint = probability.self_information(p * q)
    assert joint.item() == pytest.approx((probability.self_information(p) + probability.self_information(q)).item())


def test_kl_is_cross_entropy_minus_entropy_non_negative_and_asymmetric():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    kl_pq = probability.kl_divergence(p, q)
    assert kl_pq.item() == pytest.approx((probability.cross_entropy(p, q) - probability.entropy(p)).item())
    assert kl_pq.item() == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert kl_pq.item() != pytest.approx(probability.kl_divergence(q, p).item())
    g = torch.Generator().manual_seed(0)
    a = torch.rand(500, 4, generator=g, dtype=torch.float64)
    b = torch.rand(500, 4, generator=g, dtype=torch.float64)
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    assert (probability.kl_divergence(a, b) >= 0).all()
    assert probability.kl_divergence(a, a).abs().max() < 1e-12


def test_kl_is_infinite_where_q_misses_an_outcome_of_p():
    assert math.isinf(probability.kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item())


def test_probability_vectors_are_validated():
    with pytest.raises(ValueError, match="must sum to 1 along the last dimension; one sums to 0.9"):
        probability.entropy(torch.tensor([0.5, 0.4]))
    with pytest.raises(ValueError, match="finite, non-negative probabilities"):
        probability.entropy(torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match=r"p and q must have the same shape, got \(2,\) and \(3,\)"):
        probability.cross_entropy(torch.tensor([0.5, 0.5]), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="base must be > 0 and != 1"):
        probability.entropy(torch.tensor([0.5, 0.5]), base=1)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        probability.self_information(torch.tensor(1.2))


# --- regression as MLE and MAP ------------------------------------------------------------------

@pytest.fixture
def curve_data():
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-1, 1, 15, dtype=torch.float64)
    y = torch.sin(math.pi * x) + 0.3 * torch.randn(15, generator=g, dtype=torch.float64)
    return probability.legendre_features(x, 5), y


def test_legendre_features_match_known_polynomials():
    x = torch.tensor([-1.0, -0.3, 0.0, 0.5, 1.0], dtype=torch.float64)
    phi = probability.legendre_features(x, 3)
    assert phi.shape == (5, 4)
    assert torch.allclose(phi[:, 2], (3 * x**2 - 1) / 2)
    assert torch.allclose(phi[:, 3], (5 * x**3 - 3 * x) / 2)
    assert probability.legendre_features(x, 0).shape == (5, 1)
    with pytest.raises(ValueError, match="x must lie in \\[-1, 1\\]"):
        probability.legendre_features(torch.tensor([2.0]), 3)
    with pytest.raises(ValueError, match="degree must be a non-negative int, got -1"):
        probability.legendre_features(x, -1)


def test_closed_form_regression_is_least_squares_and_ridge(curve_data):
    phi, y = curve_data
    w = probability.fit_linear_regression(phi, y)
    assert torch.allclose(w, torch.linalg.lstsq(phi, y[:, None]).solution[:, 0], atol=1e-10)
    w_ridge = probability.fit_linear_regression(phi, y, ridge=2.0)
    gradient = -2 * phi.T @ (y - phi @ w_ridge) + 2 * 2.0 * w_ridge  # of ||y - Xw||^2 + 2 ||w||^2
    assert gradient.abs().max() < 1e-10
    assert w_ridge.norm() < w.norm()
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0, got -1"):
        probability.fit_linear_regression(phi, y, ridge=-1)
    with pytest.raises(ValueError, match=r"y must be a 1-D tensor with one target per row of features \(15\)"):
        probability.fit_linear_regression(phi, y[:3])


def test_negative_log_posterior_is_squared_error_plus_constants(curve_data):
    phi, y = curve_data
    w = torch.randn(phi.shape[1], dtype=torch.float64)
    sse = (y - phi @ w).pow(2).sum()
    nll = probability.regression_neg_log_posterior(w, phi, y, noise_std=0.3)
    assert nll.item() == pytest.approx((sse / (2 * 0.09) + 0.5 * len(y) * math.log(2 * math.pi * 0.09)).item())
    with_prior = probability.regression_neg_log_posterior(w, phi, y, noise_std=0.3, prior_std=2.0)
    prior_term = w.pow(2).sum() / 8 + 0.5 * len(w) * math.log(2 * math.pi * 4)
    assert (with_prior - nll).item() == pytest.approx(prior_term.item())


def test_numerical_fit_finds_the_closed_form_mle_and_map(curve_data):
    phi, y = curve_data
    mle = probability.fit_regression_numerically(phi, y, noise_std=0.3)
    map_ = probability.fit_regression_numerically(phi, y, noise_std=0.3, prior_std=0.5)
    assert torch.allclose(mle, probability.fit_linear_regression(phi, y), atol=1e-6)
    assert torch.allclose(map_, probability.fit_linear_regression(phi, y, ridge=0.3**2 / 0.5**2), atol=1e-6)


# --- continuous KL: grid integration, Gaussian fits, Monte Carlo ---------------------------------

GRID = torch.linspace(-10, 10, 2001, dtype=torch.float64)


def test_kl_on_grid_matches_the_gaussian_closed_form():
    log_p = Normal(torch.tensor(1.0, dtype=torch.float64), 0.5).log_prob(GRID)
    log_q = Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).log_prob(GRID)
    expected = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[math.log(0.25)]])).item()
    assert probability.kl_on_grid(log_p, log_q, GRID).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="grid must be strictly increasing"):
        probability.kl_on_grid(log_p, log_q, GRID.flip(0))
    with pytest.raises(ValueError, match="must have the grid's shape"):
        probability.kl_on_grid(log_p[:5], log_q, GRID)


def _mixture():
    return MixtureSameFamily(Categorical(torch.tensor([0.7, 0.3], dtype=torch.float64)),
                             Normal(torch.tensor([-2.0, 2.0], dtype=torch.float64),
                                    torch.tensor([0.6, 0.6], dtype=torch.float64)))


def test_forward_kl_fit_matches_moments_and_reverse_kl_fit_seeks_a_mode():
    mixture = _mixture()
    log_p = mixture.log_prob(GRID)
    forward = probability.fit_gaussian_by_kl(log_p, GRID, "forward")
    assert forward.mean == pytest.approx(mixture.mean.item(), abs=1e-4)
    assert forward.std == pytest.approx(mixture.variance.sqrt().item(), abs=1e-4)
    reverse = probability.fit_gaussian_by_kl(log_p, GRID, "reverse", forward.mean, forward.std)
    assert reverse.mean == pytest.approx(-2.0, abs=0.05) and reverse.std == pytest.approx(0.6, abs=0.05)
    assert reverse.kl == pytest.approx(-math.log(0.7), abs=0.02)
    other = probability.fit_gaussian_by_kl(log_p, GRID, "reverse", init_mean=2.0, init_std=0.6)
    assert other.mean == pytest.approx(2.0, abs=0.05) and other.kl > reverse.kl


def test_gaussian_fit_rejects_bad_arguments_and_a_fit_that_leaves_the_grid():
    log_p = _mixture().log_prob(GRID)
    with pytest.raises(ValueError, match="direction must be one of \\['forward', 'reverse'\\], got 'sideways'"):
        probability.fit_gaussian_by_kl(log_p, GRID, "sideways")
    with pytest.raises(ValueError, match="init_std must be > 0"):
        probability.fit_gaussian_by_kl(log_p, GRID, "reverse", init_std=0.0)
    narrow_grid = torch.linspace(-2.5, -1.5, 201, dtype=torch.float64)
    with pytest.raises(ValueError, match="of its mass on the grid"):
        probability.fit_gaussian_by_kl(_mixture().log_prob(narrow_grid), narrow_grid, "forward")


def test_monte_carlo_kl_agrees_with_the_closed_form_within_its_standard_error():
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(40, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(40, 3, generator=g, dtype=torch.float64)
    estimate, standard_error = probability.gaussian_kl_monte_carlo(mu, logvar, 20_000, generator=g)
    z = (estimate - gaussian_kl(mu, logvar)) / standard_error
    assert z.abs().max() < 4.5 and abs(z.mean().item()) < 0.7
    same, _ = probability.gaussian_kl_monte_carlo(mu, logvar, 20_000, generator=torch.Generator().manual_seed(9))
    again, _ = probability.gaussian_kl_monte_carlo(mu, logvar, 20_000, generator=torch.Generator().manual_seed(9))
    assert torch.equal(same, again)
    with pytest.raises(ValueError, match="n_samples must be at least 2"):
        probability.gaussian_kl_monte_carlo(mu, logvar, 1)
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        probability.gaussian_kl_monte_carlo(mu, logvar[:, :2], 10)


# --- gradient estimators ----------------------------------------------------------------------

def test_both_gradient_estimators_are_unbiased_and_reparameterisation_has_lower_variance():
    g = torch.Generator().manual_seed(0)
    n = 50_000
    reparam = probability.expectation_gradient_samples(lambda z: z**2, 2.0, 1.0, n, "reparameterisation", g)
    score = probability.expectation_gradient_samples(lambda z: z**2, 2.0, 1.0, n, "score", g)
    for samples in (reparam, score):  # d/dmu E[z^2] = 2 mu = 4
        assert abs(samples.mean().item() - 4.0) < 4 * samples.std().item() / math.sqrt(n)
    # Exact single-sample variances: 4 sigma^2 = 4 and E[(2+e)^4 e^2] - 16 = 87.
    assert reparam.var().item() == pytest.approx(4.0, rel=0.05)
    assert score.var().item() == pytest.approx(87.0, rel=0.1)
    with pytest.raises(ValueError, match="estimator must be one of"):
        probability.expectation_gradient_samples(lambda z: z, 0.0, 1.0, 10, "finite-difference")
    with pytest.raises(ValueError, match="std must be > 0"):
        probability.expectation_gradient_samples(lambda z: z, 0.0, 0.0, 10, "score")


# --- the closed-form latent-variable toy ------------------------------------------------------

def test_toy_model_evidence_posterior_and_elbo_identity():
    toy = probability.GaussianToyModel(noise_std=0.5)
    x = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64)
    # Evidence by numerical integration of p(x | z) p(z) over z.
    z = torch.linspace(-10, 10, 20_001, dtype=torch.float64)
    joint = Normal(z, 0.5).log_prob(x[:, None]).exp() * Normal(0.0, 1.0).log_prob(z).exp()
    assert torch.allclose(torch.trapezoid(joint, z, dim=1).log(), toy.log_evidence(x), atol=1e-8)
    post_mean, post_logvar = toy.posterior(x)
    assert torch.allclose(post_mean, x / 1.25) and torch.allclose(post_logvar.exp(), torch.full_like(x, 0.2))
    q_mean, q_logvar = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64)
    gap = toy.log_evidence(x) - toy.elbo(x, q_mean, q_logvar)
    assert torch.allclose(gap, toy.kl_to_posterior(x, q_mean, q_logvar), atol=1e-12)
    assert (gap > 0).all()
    assert torch.allclose(toy.elbo(x, post_mean, post_logvar), toy.log_evidence(x), atol=1e-12)
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        probability.GaussianToyModel(noise_std=0.0)


# --- plots --------------------------------------------------------------------------------------

def test_latent_quantile_grid_has_equal_prior_mass_cells_in_plot_layout():
    z = plots.latent_quantile_grid(4)
    assert z.shape == (16, 2)
    cdf = Normal(0.0, 1.0).cdf(z.double())
    assert torch.allclose(cdf[:4, 0], torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64), atol=1e-6)
    assert (z[:4, 1] == z[0, 1]).all() and z[0, 1] > 0 > z[-1, 1]  # first row: largest z_2
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        plots.latent_quantile_grid(0)


def test_image_mosaic_tiles_images_into_one_picture():
    images = torch.rand(6, 12)
    ax = plots.image_mosaic(images, (3, 4), rows=2, title="six")
    canvas = ax.get_images()[0].get_array()
    assert canvas.shape == (2 * 4 + 1, 3 * 5 + 1)
    assert torch.allclose(torch.as_tensor(canvas[1:4, 1:5], dtype=torch.float32), images[0].view(3, 4))
    assert ax.get_title() == "six"


def test_latent_manifold_decodes_the_grid_and_needs_a_2d_latent():
    vaelib.seed_everything(0)
    vae = vaelib.VAE(16, latent_dim=2, hidden=(8,), decoder="bernoulli")
    ax = plots.latent_manifold(vae, n=3, shape=(4, 4))
    canvas = ax.get_images()[0].get_array()
    with torch.no_grad():
        first = vae.decode(plots.latent_quantile_grid(3)[:1]).view(4, 4)
    assert torch.allclose(torch.as_tensor(canvas[1:5, 1:5], dtype=torch.float32), first, atol=1e-6)
    with pytest.raises(ValueError, match="needs a model with a 2-D latent space, got latent_dim=3"):
        plots.latent_manifold(vaelib.VAE(16, latent_dim=3, hidden=(8,)), n=3, shape=(4, 4))


def test_class_scatter_and_plot_densities_draw_one_series_per_entry():
    z = torch.randn(30, 2)
    labels = torch.arange(30) % 3
    ax = plots.class_scatter(z, labels, title="classes")
    assert len(ax.collections) == 3 and [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    grid = torch.linspace(-3, 3, 50)
    ax = plots.plot_densities(grid, {"p": Normal(0.0, 1.0).log_prob(grid).exp(), "q": torch.ones(50) * 0.1})
    assert len(ax.get_lines()) == 2 and ax.get_ylabel() == "density"
