import copy
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import vaelib
from vaelib.data import cosine_surface, load_digits
from vaelib import estimators, losses
from vaelib.estimators import iwae_bound, iwae_curve, marginal_log_likelihood, ppca_as_vae, ppca_log_likelihood
from vaelib.pca import PPCA, fit_ppca


def linear_gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    """Samples of a known pPCA model in 5-D with a 2-D latent and noise variance 0.04."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.5], [0.5, -0.5], [0.0, 0.3]], dtype=torch.float64)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return z @ weight.T + torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64) \
        + 0.2 * torch.randn(n, 5, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def data64():
    return linear_gaussian_data(4000)


@pytest.fixture(scope="module")
def ppca64(data64):
    return fit_ppca(data64, 2)


def gap_of_scaled_posterior(scale: float, latent_dim: int) -> float:
    """KL(q || p(z|x)) when q has the exact posterior's mean and `scale` times its variances."""
    return 0.5 * latent_dim * (scale - 1 - math.log(scale))


# --- probabilistic PCA ------------------------------------------------------------------------

def test_fit_ppca_recovers_the_generating_noise_variance(ppca64, data64):
    assert ppca64.weight.shape == (5, 2) and ppca64.mean.shape == (5,)
    assert ppca64.weight.dtype == torch.float64
    assert ppca64.noise_variance == pytest.approx(0.04, rel=0.1)
    gram = ppca64.weight.T @ ppca64.weight
    assert abs(gram[0, 1].item()) < 1e-10  # orthogonal columns: the exact posterior is diagonal


def test_ppca_log_likelihood_matches_multivariate_normal_and_the_closed_form_maximum(ppca64, data64):
    got = ppca_log_likelihood(ppca64, data64)
    expected = MultivariateNormal(ppca64.mean, ppca64.covariance).log_prob(data64)
    assert torch.allclose(got, expected, atol=1e-10)
    # At the maximum, tr(C⁻¹S) = d, so the mean log-likelihood is -(d log 2π + log|C| + d) / 2 with
    # log|C| = sum of the k kept eigenvalues' logs + (d - k) log(noise variance) (Tipping & Bishop).
    centred = data64 - data64.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred / len(data64)).flip(0)
    log_det = eigenvalues[:2].log().sum() + 3 * math.log(ppca64.noise_variance)
    closed_form = -0.5 * (5 * math.log(2 * math.pi) + log_det + 5)
    assert got.mean().item() == pytest.approx(closed_form.item(), abs=1e-9)


@pytest.mark.parametrize("change", ["scale W", "rotate W", "noise up", "noise down"])
def test_fit_ppca_is_a_maximum_of_the_likelihood(ppca64, data64, change):
    best = ppca_log_likelihood(ppca64, data64).mean().item()
    w, s2 = ppca64.weight, ppca64.noise_variance
    rotation = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=torch.float64)
    other = {"scale W": PPCA(ppca64.mean, 1.1 * w, s2), "rotate W": PPCA(ppca64.mean, w @ rotation, s2),
             "noise up": PPCA(ppca64.mean, w, 1.2 * s2), "noise down": PPCA(ppca64.mean, w, 0.8 * s2)}[change]
    value = ppca_log_likelihood(other, data64).mean().item()
    if change == "rotate W":  # W R gives the same covariance: the likelihood cannot tell them apart
        assert value == pytest.approx(best, abs=1e-10)
    else:
        assert value < best - 1e-4


def test_fit_ppca_with_fewer_points_than_features_counts_the_zero_eigenvalues():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 0.0, 0.0]],
                     dtype=torch.float64)
    ppca = fit_ppca(x, 1)
    centred = x - x.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred / 3).flip(0)  # two non-zero, three zero
    assert ppca.noise_variance == pytest.approx(eigenvalues[1:].sum().item() / 4, rel=1e-9)


def test_fit_ppca_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"k must be smaller than the number of features \(3\), got 3"):
        fit_ppca(torch.randn(50, 3), 3)
    with pytest.raises(ValueError, match="the data lie in a subspace of dimension <= k = 2"):
        fit_ppca(torch.randn(50, 2) @ torch.randn(2, 4), 2)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        fit_ppca(torch.randn(50, 3), 0)


def test_ppca_as_vae_holds_the_exact_posterior_and_decoder(ppca64, data64):
    vae = ppca_as_vae(ppca64)
    assert isinstance(vae, vaelib.VAE) and next(vae.parameters()).dtype == torch.float64
    w, s2, mu = ppca64.weight, ppca64.noise_variance, ppca64.mean
    m = w.T @ w + s2 * torch.eye(2, dtype=torch.float64)
    post_mean = torch.linalg.solve(m, w.T @ (data64[:10] - mu).T).T
    post_cov = s2 * torch.linalg.inv(m)
    enc_mean, enc_logvar = vae.encode(data64[:10])
    assert torch.allclose(enc_mean, post_mean, atol=1e-10)
    assert torch.allclose(enc_logvar.exp(), torch.diagonal(post_cov).expand(10, 2), atol=1e-10)
    z = torch.randn(4, 2, dtype=torch.float64)
    assert torch.allclose(vae.decode(z), z @ w.T + mu, atol=1e-12)
    wider = ppca_as_vae(ppca64, posterior_variance_scale=3.0)
    assert torch.allclose(wider.encode(data64[:10])[1].exp(), 3 * enc_logvar.exp(), atol=1e-10)


def test_ppca_as_vae_rejects_non_orthogonal_weights_and_bad_scales(ppca64):
    skewed = PPCA(ppca64.mean, ppca64.weight @ torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64),
                  ppca64.noise_variance)
    with pytest.raises(ValueError, match="the columns of ppca.weight must be orthogonal"):
        ppca_as_vae(skewed)
    with pytest.raises(ValueError, match="posterior_variance_scale must be > 0, got 0.0"):
        ppca_as_vae(ppca64, posterior_variance_scale=0.0)
    with pytest.raises(TypeError, match="ppca must be a vaelib.pca.PPCA"):
        ppca_as_vae("not a model")
    with pytest.raises(ValueError, match="x must have 5 features per row, got 3"):
        ppca_log_likelihood(ppca64, torch.zeros(2, 3))


# --- the IWAE bound on pPCA, where log p(x) is known ---------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 250])
def test_with_the_exact_posterior_every_iwae_bound_equals_log_p(ppca64, data64, k):
    exact = ppca_log_likelihood(ppca64, data64[:500])
    bound = iwae_bound(ppca_as_vae(ppca64), data64[:500], k, decoder_variance=ppca64.noise_variance,
                       generator=torch.Generator().manual_seed(k))
    assert (bound - exact).abs().max().item() < 1e-9


def test_float32_model_is_exact_to_float32_rounding():
    x = linear_gaussian_data(1000).float()
    ppca = fit_ppca(x, 2)
    bound = iwae_bound(ppca_as_vae(ppca), x, 5, decoder_variance=ppca.noise_variance)
    assert bound.dtype == torch.float32
    assert (bound - ppca_log_likelihood(ppca, x)).abs().max().item() < 1e-4


def test_with_an_imperfect_posterior_the_bound_rises_towards_log_p(ppca64, data64):
    scale, variance = 4.0, ppca64.noise_variance
    vae = ppca_as_vae(ppca64, posterior_variance_scale=scale)
    g = torch.Generator().manual_seed(0)
    # k = 1 is the ELBO: below log p(x) by KL(q || p(z|x)), known in closed form here.
    many = data64.repeat(5, 1)
    elbo_gap = iwae_bound(vae, many, 1, decoder_variance=variance, generator=g) - ppca_log_likelihood(ppca64, many)
    standard_error = elbo_gap.std().item() / math.sqrt(len(many))
    assert elbo_gap.mean().item() == pytest.approx(-gap_of_scaled_posterior(scale, 2), abs=4 * standard_error)
    x = data64[:2000]
    exact = ppca_log_likelihood(ppca64, x).mean().item()
    means = {k: iwae_bound(vae, x, k, decoder_variance=variance, generator=g).mean().item() for k in (1, 10, 100, 1000)}
    assert means[1] < means[10] < means[100] < means[1000]
    assert means[100] < exact + 1e-3
    assert abs(means[1000] - exact) < 0.01


def test_marginal_log_likelihood_is_the_large_k_bound(ppca64, data64):
    vae = ppca_as_vae(ppca64, posterior_variance_scale=0.5)
    x = data64[:200]
    got = marginal_log_likelihood(vae, x, decoder_variance=ppca64.noise_variance,
                                  generator=torch.Generator().manual_seed(3))
    same = iwae_bound(vae, x, 1000, decoder_variance=ppca64.noise_variance, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, same)
    assert abs(got.mean().item() - ppca_log_likelihood(ppca64, x).mean().item()) < 0.02


def test_chunking_keeps_results_exact_and_reproducible(ppca64, data64, monkeypatch):
    monkeypatch.setattr(estimators, "MAX_ROWS_PER_CHUNK", 7)  # 20 points: 3 point chunks, 1 sample each
    x = data64[:20]
    bound = iwae_bound(ppca_as_vae(ppca64), x, 30, decoder_variance=ppca64.noise_variance)
    assert bound.shape == (20,)
    assert torch.allclose(bound, ppca_log_likelihood(ppca64, x), atol=1e-9)
    perturbed = ppca_as_vae(ppca64, posterior_variance_scale=2.0)
    runs = [iwae_bound(perturbed, x, 30, decoder_variance=ppca64.noise_variance,
                       generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


# --- nonlinear VAEs: the convention and a check by quadrature ------------------------------------

def test_k1_bound_is_the_elbo_objective_in_nats_with_variance_one_half():
    """vaelib.ELBO()'s loss is -ELBO (in nats) minus the constant (d/2) log(2π · 0.5) = (d/2) log π."""
    vaelib.seed_everything(0)
    model = vaelib.VAE(3, latent_dim=2, hidden=(16,))
    x = cosine_surface(n=200, seed=2).repeat(100, 1)
    loss = vaelib.ELBO()(x, model(x))["loss"].item()
    bound = iwae_bound(model, x, 1, generator=torch.Generator().manual_seed(0))
    standard_error = bound.std().item() / math.sqrt(len(x))
    assert bound.mean().item() == pytest.approx(-loss - 1.5 * math.log(math.pi), abs=5 * standard_error + 0.01)


def log_p_by_quadrature(model: vaelib.VAE, x: torch.Tensor, decoder_variance: float) -> torch.Tensor:
    """log p(x) = log ∫ p(x|z) p(z) dz on a fine grid of a 1-D latent (the trapezoid rule)."""
    z = torch.linspace(-7, 7, 2801, dtype=torch.float64).unsqueeze(1)
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        out = model.decoder(z)
    xs = x.double().unsqueeze(1).expand(-1, len(z), -1)
    outs = out.unsqueeze(0).expand(len(x), -1, -1)
    if model.decoder_kind == "bernoulli":
        log_lik = -losses.bernoulli_nll(outs, xs)
    else:
        log_lik = losses.gaussian_log_density(xs, outs, math.log(decoder_variance))
    log_joint = log_lik - 0.5 * (math.log(2 * math.pi) + z.squeeze(1) ** 2)
    dz = (z[1] - z[0]).item()
    return torch.logsumexp(log_joint, dim=1) + math.log(dz)


@pytest.mark.parametrize("decoder, data", [("gaussian", "cosine"), ("bernoulli", "digits")])
def test_estimate_matches_quadrature_for_a_trained_vae_with_a_1d_latent(decoder, data):
    if data == "cosine":
        x = cosine_surface(n=1000, seed=0)
    else:
        x = load_digits()[0][:500]
    vaelib.seed_everything(0)
    model = vaelib.VAE(x.shape[1], latent_dim=1, hidden=(16,), activation="tanh", decoder=decoder)
    vaelib.fit(model, vaelib.ELBO(beta=0.1 if decoder == "gaussian" else 1.0), x, epochs=30, lr=3e-3,
               progress=False)
    variance = 0.05  # the decoder variance that ELBO(beta=0.1) implies
    x_eval = x[:20]
    exact = log_p_by_quadrature(model, x_eval, variance)
    estimate = marginal_log_likelihood(model, x_eval, k=2000, decoder_variance=variance,
                                       generator=torch.Generator().manual_seed(1))
    elbo = iwae_bound(model, x_eval, 1, decoder_variance=variance, generator=torch.Generator().manual_seed(1))
    # Per point the estimate scatters around log p(x) by Monte Carlo noise (~0.01 nats at this k).
    error = estimate.double() - exact
    assert abs(error.mean().item()) < 0.02 and error.abs().mean().item() < 0.04
    assert elbo.mean().item() < estimate.mean().item()


# --- input validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"k": 0}, ValueError, "k must be a positive integer, got 0"),
    ({"k": 2.5}, TypeError, r"k must be an int, got float \(2.5\)"),
    ({"k": True}, TypeError, "k must be an int, got bool"),
    ({"x": torch.zeros(4, 5)}, ValueError, "x must have 3 features per row, got 5"),
    ({"x": torch.zeros(4)}, ValueError, r"x must have shape \(n, d\), got shape \(4,\)"),
    ({"x": [[0.0, 1.0, 2.0]]}, TypeError, "x must be a torch.Tensor"),
    ({"decoder_variance": 0.0}, ValueError, "decoder_variance must be > 0, got 0.0"),
    ({"model": vaelib.Autoencoder(3)}, TypeError, "unconditional latent-variable models .*: the Autoencoder "
                                                  "model lacks prior = 'standard_normal' .*condition\\)$"),
])
@pytest.mark.parametrize("estimator", [iwae_bound, marginal_log_likelihood])
def test_estimators_reject_bad_arguments(estimator, kwargs, error, message):
    args = {"model": vaelib.VAE(3), "x": torch.zeros(4, 3), "k": 2, **kwargs}
    with pytest.raises(error, match=message):
        estimator(**args)


class UserVAE(torch.nn.Module):
    """A user's own class that follows the protocol of vaelib.models.base: the same computation as
    vaelib.VAE(in_dim, latent_dim, hidden=(width,), activation="tanh"), written without vaelib."""

    prior = "standard_normal"
    decoder_kind = "gaussian"

    def __init__(self, in_dim: int, latent_dim: int, width: int):
        super().__init__()
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.encoder = torch.nn.Sequential(torch.nn.Linear(in_dim, width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, 2 * latent_dim))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(latent_dim, width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, in_dim))

    def encode(self, x):
        return tuple(self.encoder(x).chunk(2, dim=-1))


def test_a_user_model_that_follows_the_protocol_is_scored_as_vaelib_scores_its_vae():
    """The IWAE bound, the ELBO and BoundMonitor take any model that declares the protocol; on the
    same weights a user's VAE gets vaelib.VAE's bounds, draw for draw."""
    vaelib.seed_everything(0)
    reference = vaelib.VAE(5, latent_dim=2, hidden=(8,), activation="tanh")
    user = UserVAE(5, 2, 8)
    user.load_state_dict(reference.state_dict())
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    for k in (1, 50):
        expected = iwae_bound(reference, x, k, decoder_variance=0.3, generator=torch.Generator().manual_seed(2))
        bound = iwae_bound(user, x, k, decoder_variance=0.3, generator=torch.Generator().manual_seed(2))
        assert torch.equal(bound, expected)
    monitor = estimators.BoundMonitor(user, {"x": x}, k=3)
    monitor()
    assert monitor.curves["x"] == [pytest.approx(iwae_bound(reference, x, 3, generator=torch.Generator()
                                                            .manual_seed(0)).mean().item())]


def test_models_outside_the_protocol_are_refused_saying_what_they_lack():
    """A CVAE has an encoder, a decoder and a Gaussian posterior, but its decoder needs the label:
    it declares no prior, so it is refused rather than scored without its condition. A model that
    declares the protocol but breaks it is refused by what it returned."""
    x = torch.zeros(4, 5)
    with pytest.raises(TypeError, match=r"the CVAE model lacks prior = 'standard_normal' .*CVAE has no p\(x\) without its "
                                        r"condition\)$"):
        iwae_bound(vaelib.CVAE(in_dim=8, n_classes=3), torch.zeros(4, 8), 2)
    user = UserVAE(5, 2, 8)
    user.decoder_kind = "poisson"
    with pytest.raises(TypeError, match=r"the UserVAE model lacks decoder_kind, one of \('gaussian', 'bernoulli'\)$"):
        iwae_bound(user, x, 2)
    user = UserVAE(5, 2, 8)
    user.encode = lambda x: user.encoder(x)  # one tensor, not (mu, logvar)
    with pytest.raises(TypeError, match=r"UserVAE.encode\(x\) must return the posterior's \(mu, logvar\), each of "
                                        r"shape \(4, 2\), got \(4, 4\)"):
        iwae_bound(user, x, 2)
    user = UserVAE(5, 2, 8)
    user.decoder = torch.nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"UserVAE.decoder\(z\) must return shape \(2, 4, 5\) for codes of shape "
                                        r"\(2, 4, 2\), got \(2, 4, 3\)"):
        iwae_bound(user, x, 2)


def test_float64_data_is_evaluated_by_a_float32_model():
    vaelib.seed_everything(0)
    bound = iwae_bound(vaelib.VAE(3), torch.zeros(4, 3, dtype=torch.float64), 3)
    assert bound.shape == (4,) and bound.dtype == torch.float32 and torch.isfinite(bound).all()


def test_iwae_curve_averages_the_bound_for_each_k(ppca64, data64):
    vae = ppca_as_vae(ppca64, posterior_variance_scale=4.0)
    x = data64[:300]
    curve = iwae_curve(vae, x, [1, 50], decoder_variance=ppca64.noise_variance,
                       generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    expected = [iwae_bound(vae, x, k, decoder_variance=ppca64.noise_variance, generator=g).mean().item()
                for k in (1, 50)]
    assert list(curve) == [1, 50] and list(curve.values()) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(TypeError, match="ks must be a non-empty list or tuple of positive ints, got 10"):
        iwae_curve(vae, x, 10)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        iwae_curve(vae, x, [0])


def test_plot_curves_draws_one_line_per_curve_and_reference():
    import matplotlib.pyplot as plt

    from vaelib import plots

    ax = plots.plot_curves({"a": {1: -3.0, 10: -2.5, 100: -2.4}, "b": {1: -4.0, 100: -3.0}}, xlabel="k",
                           ylabel="nats", title="t", references={"exact": -2.3})
    assert len(ax.lines) == 3 and ax.get_xscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["a", "b", "exact"]
    assert list(ax.lines[0].get_xdata()) == [1, 10, 100] and ax.get_title() == "t"
    plt.close(ax.figure)


# --- standard errors and the split of the KL term -----------------------------------------------

def test_iwae_points_are_the_per_point_bounds_whose_means_iwae_curve_gives(ppca64, data64):
    vae, x = ppca_as_vae(ppca64, posterior_variance_scale=4.0), data64[:300]
    points = estimators.iwae_points(vae, x, [1, 20], decoder_variance=ppca64.noise_variance,
                                    generator=torch.Generator().manual_seed(5))
    curve = iwae_curve(vae, x, [1, 20], decoder_variance=ppca64.noise_variance,
                       generator=torch.Generator().manual_seed(5))
    assert list(points) == [1, 20] and all(v.shape == (300,) for v in points.values())
    assert {k: v.mean().item() for k, v in points.items()} == curve
    g = torch.Generator().manual_seed(5)
    expected = [iwae_bound(vae, x, k, decoder_variance=ppca64.noise_variance, generator=g) for k in (1, 20)]
    assert all(torch.equal(points[k], e) for k, e in zip((1, 20), expected))


def test_mean_with_error_is_the_mean_and_std_over_root_n():
    values = torch.tensor([1.0, 2.0, 3.0, 6.0])
    estimate = estimators.mean_with_error(values)
    assert estimate.mean == pytest.approx(3.0) and estimate.n == 4
    assert estimate.standard_error == pytest.approx(values.std().item() / 2)
    assert f"{estimate:.2f}" == "3.00 ± 1.08" and str(estimate) == "3 ± 1.08"


def test_the_standard_error_covers_the_spread_of_repeated_monte_carlo_means(ppca64, data64):
    """Over independent draws of the noise (same points), the mean ELBO varies by no more than its
    printed error, which also covers the variation between points."""
    vae, x = ppca_as_vae(ppca64, posterior_variance_scale=4.0), data64[:400]
    means, errors = [], []
    for seed in range(20):
        estimate = estimators.mean_with_error(
            iwae_bound(vae, x, 1, decoder_variance=ppca64.noise_variance, generator=torch.Generator().manual_seed(seed)))
        means.append(estimate.mean)
        errors.append(estimate.standard_error)
    spread = torch.tensor(means).std().item()
    assert spread < sum(errors) / len(errors)


@pytest.mark.parametrize("bad", [torch.ones(1), torch.ones(3, 2), [1.0, 2.0], torch.tensor([1.0, float("nan")])])
def test_mean_with_error_rejects_what_has_no_standard_error(bad):
    with pytest.raises(ValueError, match="values"):
        estimators.mean_with_error(bad)


def test_kl_decomposition_of_posteriors_equal_to_the_prior_is_zero():
    split = estimators.kl_decomposition(torch.zeros(50, 3), torch.zeros(50, 3))
    assert split.mean_kl == 0.0 and split.marginal_kl.mean == pytest.approx(0.0, abs=1e-12)
    assert split.mutual_information.mean == pytest.approx(0.0, abs=1e-12)
    assert split.information_limit == pytest.approx(math.log(50))


def test_kl_decomposition_of_one_shared_posterior_carries_no_information():
    """Every point with the same q(z | x): the aggregate posterior is that q, so the whole mean KL is
    KL(q(z) || p(z)) and the information is zero, whatever the draws."""
    mu, logvar = torch.tensor([[1.0, -0.5]]).repeat(200, 1), torch.tensor([[-1.0, 0.3]]).repeat(200, 1)
    split = estimators.kl_decomposition(mu, logvar, samples_per_point=20, generator=torch.Generator().manual_seed(0))
    assert abs(split.mutual_information.mean) < 1e-12
    assert split.mean_kl == pytest.approx(losses.gaussian_kl(mu[:1], logvar[:1]).item())
    assert split.marginal_kl.mean == pytest.approx(split.mean_kl, abs=1e-12)


def test_kl_decomposition_of_separated_posteriors_reaches_log_n():
    """Narrow posteriors far apart: the code names its point, I(x; z) = log n."""
    n = 64
    mu = torch.stack([10.0 * torch.arange(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)], dim=1)
    logvar = torch.full((n, 2), -4.0, dtype=torch.float64)
    split = estimators.kl_decomposition(mu, logvar, samples_per_point=4, generator=torch.Generator().manual_seed(1))
    assert split.mutual_information.mean == pytest.approx(math.log(n), abs=1e-6)
    assert split.marginal_kl.mean == pytest.approx(split.mean_kl - math.log(n), abs=1e-6)


def test_kl_decomposition_matches_a_mixture_density_and_is_chunked_exactly(monkeypatch):
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(30, 2, generator=g), 0.5 * torch.randn(30, 2, generator=g)
    whole = estimators.kl_decomposition(mu, logvar, samples_per_point=3, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(estimators, "MAX_CODES_PER_CHUNK", 7 * 60)  # 7 codes per chunk
    chunked = estimators.kl_decomposition(mu, logvar, samples_per_point=3, generator=torch.Generator().manual_seed(4))
    assert chunked.mutual_information.mean == pytest.approx(whole.mutual_information.mean, abs=1e-12)
    # The same draws, scored by torch.distributions' mixture of the 30 posteriors.
    mu64, std64 = mu.double(), torch.exp(0.5 * logvar.double())
    eps = torch.randn((3, 30, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = (mu64 + std64 * eps).reshape(-1, 2)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(30, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(mu64, std64), 1))
    own = torch.distributions.Independent(torch.distributions.Normal(mu64, std64), 1).log_prob(z.view(3, 30, 2))
    expected = (own.reshape(-1) - mixture.log_prob(z)).mean().item()
    assert whole.mutual_information.mean == pytest.approx(expected, abs=1e-10)
    assert whole.marginal_kl.mean == pytest.approx(whole.mean_kl - expected, abs=1e-10)
    assert whole.mutual_information.mean <= whole.information_limit + 4 * whole.mutual_information.standard_error


@pytest.mark.parametrize("mu, logvar, samples", [
    (torch.zeros(5, 2), torch.zeros(5, 3), 1), (torch.zeros(5), torch.zeros(5), 1),
    (torch.zeros(1, 2), torch.zeros(1, 2), 1), (torch.zeros(5, 2), torch.zeros(5, 2), 0)])
def test_kl_decomposition_rejects_bad_arguments(mu, logvar, samples):
    with pytest.raises(ValueError, match="mu and logvar must be|samples_per_point must be"):
        estimators.kl_decomposition(mu, logvar, samples_per_point=samples)
