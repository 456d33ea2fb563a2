"""The pieces of "Kingma and Welling's experiments" that are not wake-sleep: vaelib.estimators'
decoder_log_likelihood and BoundMonitor, and vaelib.plots.bound_curves."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vaelib  # noqa: E402
from vaelib import plots  # noqa: E402
from vaelib.estimators import BoundMonitor, decoder_log_likelihood, iwae_bound  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _model(decoder: str) -> vaelib.VAE:
    vaelib.seed_everything(0)
    return vaelib.VAE(6, latent_dim=2, hidden=(5,), decoder=decoder)


def test_decoder_log_likelihood_is_the_bernoulli_and_the_gaussian_density():
    x, z = torch.rand(4, 6).round(), torch.randn(4, 2)
    bernoulli = _model("bernoulli")
    p = torch.sigmoid(bernoulli.decoder(z))
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(dim=1)
    assert torch.allclose(decoder_log_likelihood(bernoulli, x, z), expected, atol=1e-5)
    gaussian = _model("gaussian")
    mean, variance = gaussian.decoder(z), 0.3
    expected = (-0.5 * math.log(2 * math.pi * variance) - (x - mean) ** 2 / (2 * variance)).sum(dim=1)
    assert torch.allclose(decoder_log_likelihood(gaussian, x, z, decoder_variance=variance), expected, atol=1e-5)


def test_decoder_log_likelihood_scores_several_codes_per_point():
    model, x = _model("bernoulli"), torch.rand(4, 6)
    codes = torch.randn(3, 4, 2)
    together = decoder_log_likelihood(model, x, codes)
    assert together.shape == (3, 4)
    assert torch.allclose(together[1], decoder_log_likelihood(model, x, codes[1]), atol=1e-6)


def test_the_monitor_records_the_start_and_every_epoch_with_the_same_noise():
    model = _model("bernoulli")
    data = {"training": torch.rand(50, 6), "held-out": torch.rand(30, 6)}
    monitor = BoundMonitor(model, data, seed=3)
    monitor()
    monitor()  # nothing trained in between: the same samples give the same values
    assert monitor.curves["training"][0] == monitor.curves["training"][1]
    expected = iwae_bound(model, data["held-out"], 1, generator=torch.Generator().manual_seed(3))
    assert monitor.curves["held-out"][0] == pytest.approx(expected.mean().item())
    vaelib.fit(model, vaelib.ELBO(), data["training"], epochs=3, batch_size=10, lr=1e-2, progress=False,
               on_epoch_end=monitor)
    assert [len(curve) for curve in monitor.curves.values()] == [5, 5]
    assert monitor.curves["training"][-1] > monitor.curves["training"][0]


def test_the_monitor_refuses_what_it_cannot_measure():
    model = _model("gaussian")
    with pytest.raises(TypeError, match="dict"):
        BoundMonitor(model, torch.rand(5, 6))
    with pytest.raises(ValueError, match="features"):
        BoundMonitor(model, {"held-out": torch.rand(5, 4)})
    with pytest.raises(ValueError, match="k"):
        BoundMonitor(model, {"held-out": torch.rand(5, 6)}, k=0)


def test_bound_curves_draw_each_curve_after_the_start_on_a_log_axis():
    runs = {"AEVB": {"training": [-500.0, -200.0, -150.0], "held-out": [-500.0, -210.0, -160.0]},
            "wake-sleep": {"training": [-500.0, -250.0, -180.0], "held-out": [-500.0, -255.0, -185.0]}}
    ax = plots.bound_curves(runs, points_per_epoch=1000, title="t")
    lines = ax.get_lines()
    assert len(lines) == 4 and ax.get_xscale() == "log"
    assert list(lines[1].get_xdata()) == [1000, 2000] and list(lines[1].get_ydata()) == [-210.0, -160.0]
    assert lines[0].get_linestyle() == "--" and lines[1].get_linestyle() == "-"
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    with pytest.raises(ValueError, match="points_per_epoch"):
        plots.bound_curves(runs, points_per_epoch=0)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_fit_batched_monitored_trains_as_fit_batched_and_calls_back_after_every_epoch(backend):
    from vaelib.monitoring import fit_batched_monitored
    x = torch.rand(120, 6, generator=torch.Generator().manual_seed(1)).round()

    def runs():
        vaelib.seed_everything(0)
        models = [vaelib.VAE(6, latent_dim=2, hidden=(5,), activation="tanh", decoder="bernoulli")
                  for _ in range(2)]
        return models, [vaelib.ELBO() for _ in models]

    settings = dict(seeds=[3, 4], epochs=3, batch_size=50, lr=1e-2, progress=False, backend=backend)
    plain, objectives = runs()
    expected = vaelib.fit_batched(plain, objectives, x, **settings)
    monitored, objectives = runs()
    seen = []

    def record(epoch, histories):
        seen.append((epoch, len(histories[0]), monitored[1].decoder[-1].bias.detach().clone()))

    histories = fit_batched_monitored(monitored, objectives, x, on_epoch_end=record, **settings)
    assert [(epoch, done) for epoch, done, _ in seen] == [(0, 1), (1, 2), (2, 3)]
    assert not torch.equal(seen[0][2], seen[1][2])       # the models hold each epoch's weights
    for a, b in zip(plain, monitored):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert [h.terms for h in histories] == [h.terms for h in expected]


def test_fit_batched_monitored_refuses_its_own_checkpoint_keywords():
    from vaelib.monitoring import fit_batched_monitored
    vaelib.seed_everything(0)
    model = vaelib.VAE(6, latent_dim=2, hidden=(5,))
    with pytest.raises(TypeError, match="'checkpoint'"):
        fit_batched_monitored([model], [vaelib.ELBO()], torch.rand(10, 6), seeds=[0], epochs=1,
                              on_epoch_end=lambda epoch, histories: None, checkpoint="run.ckpt")
    with pytest.raises(TypeError, match="on_epoch_end"):
        fit_batched_monitored([model], [vaelib.ELBO()], torch.rand(10, 6), seeds=[0], epochs=1,
                              on_epoch_end=None)


def test_kl_per_dimension_is_zero_for_a_prior_dimension_and_adds_up_to_the_mean_kl():
    from vaelib.diagnostics import kl_per_dimension
    from vaelib.losses import gaussian_kl
    x = torch.randn(5_000, 2, generator=torch.Generator().manual_seed(0))
    # a linear encoder: dimension 0 has mean x_0 and variance 1; dimension 1 is the prior N(0, 1)
    # for every x; dimension 2 has mean 0 and log-variance 1 (wider than the prior)
    vae = vaelib.VAE(2, latent_dim=3, hidden=(), activation="identity")
    with torch.no_grad():
        layer = vae.encoder[0]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, 0] = 1.0
        layer.bias[5] = 1.0
    kl = kl_per_dimension(vae, x)
    assert kl.dtype == torch.float64 and kl.shape == (3,)
    assert kl[0].item() == pytest.approx(0.5 * x[:, 0].double().pow(2).mean().item(), rel=1e-9)
    assert kl[1].item() == 0.0
    assert kl[2].item() == pytest.approx(0.5 * (math.e - 2.0), rel=1e-6)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
    assert kl.sum().item() == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
