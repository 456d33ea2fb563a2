"""The conditional VAE, the adversarial autoencoder and its regulariser (vaelib.models.cvae,
vaelib.models.aae, vaelib.adversarial), and the plots their chapter uses."""
from __future__ import annotations

import copy

import matplotlib
import pytest
import torch
import torch.nn.functional as F

import vaelib
from vaelib import plots
from vaelib.adversarial import DISCRIMINATOR_BETAS, AdversarialRegularizer
from vaelib.data import cosine_surface, load_digits
from vaelib.metrics import median_bandwidth, mmd2
from vaelib.models import AAE, CVAE, append_labels
from vaelib.objectives import reconstruction_target

matplotlib.use("Agg")


def _labelled(n=12, features=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, features, generator=g)
    y = torch.arange(n) % classes
    return x, y, append_labels(x, y, classes)


def _cvae(features=5, classes=3, decoder="gaussian", seed=0):
    vaelib.seed_everything(seed)
    return CVAE(in_dim=features + classes, n_classes=classes, latent_dim=2, hidden=(4,), activation="tanh",
                decoder=decoder)


# --- labels -------------------------------------------------------------------------------------

def test_append_labels_puts_one_hot_labels_after_the_features():
    x, y, xy = _labelled()
    assert xy.shape == (12, 8) and xy.dtype == x.dtype
    assert torch.equal(xy[:, :5], x)
    assert torch.equal(xy[:, 5:], F.one_hot(y, 3).float())


@pytest.mark.parametrize("labels, error, message", [
    (torch.tensor([0, 1, 3]), ValueError, r"class indices in \[0, 3\).*from 0 to 3"),
    (torch.tensor([0, -1, 2]), ValueError, r"from -1 to 2"),
    (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer class indices"),
    (torch.tensor([[0], [1], [2]]), ValueError, r"shape \(n,\)"),
    (torch.tensor([0, 1]), ValueError, "one class index per row of x: x has 3 rows, labels 2"),
])
def test_append_labels_rejects_bad_labels_with_a_clear_message(labels, error, message):
    with pytest.raises(error, match=message):
        append_labels(torch.zeros(3, 4), labels, 3)


def test_cvae_rejects_rows_of_the_wrong_width_and_says_how_to_build_them():
    model = _cvae()
    with pytest.raises(ValueError, match=r"8 columns, 5 features followed by a one-hot label of 3 columns, got 5"
                                         r".*append_labels"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="must exceed n_classes=10"):
        CVAE(in_dim=10, n_classes=10)
    with pytest.raises(ValueError, match="n_classes must be at least 2"):
        CVAE(in_dim=10, n_classes=1)


# --- the CVAE -----------------------------------------------------------------------------------

def test_cvae_shapes_and_protocol():
    _, _, xy = _labelled()
    model = _cvae()
    out = model(xy)
    assert out.recon.shape == (12, 5) and out.z.shape == out.mu.shape == out.logvar.shape == (12, 2)
    assert torch.equal(out.target, xy[:, :5]) and torch.equal(reconstruction_target(xy, out), xy[:, :5])
    assert [t.shape for t in model.encode(xy)] == [(12, 2), (12, 2)]
    assert model.decode(torch.zeros(4, 2), 1).shape == (4, 5)
    assert model.generate([0, 1, 2]).shape == (3, 5)
    assert model.data_dim == 5 and model.init_args["n_classes"] == 3


@pytest.mark.parametrize("decoder", ["gaussian", "bernoulli"])
def test_cvae_elbo_matches_a_hand_computation(decoder):
    """loss = mean_i [ -log p(x_i | z_i, y_i) ] + mean_i KL(q(z | x_i, y_i) || N(0, I)), labels excluded."""
    x, y, xy = _labelled(n=4)
    model = _cvae(decoder=decoder)
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    terms = vaelib.ELBO()(xy, model(xy, noise=noise))
    with torch.no_grad():
        encoded = model.encoder(xy)
        mu, logvar = encoded[:, :2], encoded[:, 2:]
        z = mu + torch.exp(0.5 * logvar) * noise
        out = model.decoder(torch.cat([z, F.one_hot(y, 3).float()], dim=1))
        if decoder == "gaussian":
            recon = ((x - out) ** 2).sum(dim=1).mean()
        else:
            p = torch.sigmoid(out)
            recon = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=1).mean()
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)).mean()
    torch.testing.assert_close(terms["recon"], recon, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["kl"], kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["loss"], recon + kl, rtol=1e-5, atol=1e-6)


def test_the_calibrated_likelihood_counts_the_features_not_the_label_columns():
    _, _, xy = _labelled()
    model = _cvae()
    terms = vaelib.SigmaVAE()(xy, model(xy))
    torch.testing.assert_close(terms["sigma"], (terms["recon"] / 5).sqrt())


def test_generate_draws_reproducible_codes_and_decodes_them_with_the_chosen_label():
    model = _cvae()
    first = model.generate(2, n=6, generator=torch.Generator().manual_seed(7))
    again = model.generate(2, n=6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, model.decode(z, 2))
    torch.testing.assert_close(model.generate(2, z=z), first)
    torch.testing.assert_close(model.generate(torch.tensor(2), z=z), first)  # a 0-d tensor is one label
    assert not torch.allclose(model.generate(0, z=z), first)  # the label changes the image


@pytest.mark.parametrize("call, message", [
    (lambda m: m.generate(1), "either n .* or z"),
    (lambda m: m.generate(1, n=2, z=torch.zeros(2, 2)), "not both"),
    (lambda m: m.generate(3, n=2), r"class indices in \[0, 3\)"),
    (lambda m: m.generate([0, 1], n=2), "n is for a single label"),
    (lambda m: m.generate([0, 1], z=torch.zeros(3, 2)), r"one code per label, shape \(2, 2\)"),
    (lambda m: m.decode(torch.zeros(2, 2), [0, 1, 2]), "one class index per code: 2 codes, 3 labels"),
    (lambda m: m.style_grid(torch.zeros(2, 2), [5]), r"class indices in \[0, 3\)"),
])
def test_cvae_label_errors_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call(_cvae())


def test_style_grid_keeps_the_code_along_a_row_and_the_label_down_a_column():
    model = _cvae()
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    grid = model.style_grid(z)
    assert grid.shape == (4, 3, 5)
    for i in range(4):
        for label in range(3):
            torch.testing.assert_close(grid[i, label], model.decode(z[i:i + 1], label)[0])
    assert model.style_grid(z, [2, 0]).shape == (4, 2, 5)


def test_fit_trains_a_cvae_with_the_plain_elbo_deterministically():
    _, _, xy = _labelled(n=40)
    histories = []
    for _ in range(2):
        model = _cvae()
        histories.append(vaelib.fit(model, vaelib.ELBO(), xy, epochs=3, batch_size=10, lr=1e-2, seed=4,
                                    progress=False).terms)
    assert histories[0] == histories[1]
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]


def test_the_batched_engine_trains_a_cvae_as_fit_does():
    """forward checks shapes only, so a CVAE runs inside fit_batched's torch.func transforms."""
    _, _, xy = _labelled(n=40)
    batched = vaelib.fit_batched([_cvae(), _cvae()], [vaelib.ELBO(), vaelib.ELBO(beta=2.0)], xy, seeds=[1, 2],
                                 epochs=2, batch_size=10, lr=1e-2, progress=False)
    alone = vaelib.fit(_cvae(), vaelib.ELBO(), xy, epochs=2, batch_size=10, lr=1e-2, seed=1, progress=False)
    assert batched[0]["loss"] == pytest.approx(alone["loss"], rel=1e-5)


# --- the AAE and its regulariser ----------------------------------------------------------------

def _aae(in_dim=3, seed=0, decoder="gaussian"):
    vaelib.seed_everything(seed)
    return AAE(in_dim=in_dim, latent_dim=2, hidden=(8,), activation="tanh", decoder=decoder)


def test_aae_shapes_and_samples():
    model = _aae(decoder="bernoulli")
    out = model(torch.rand(5, 3))
    assert out.recon.shape == (5, 3) and out.z.shape == (5, 2) and out.mu is None and out.recon_is_logits
    first = model.sample(4, generator=torch.Generator().manual_seed(2))
    assert first.shape == (4, 3) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, model.sample(4, generator=torch.Generator().manual_seed(2)))


def test_the_regulariser_is_seeded_by_its_own_seed_and_leaves_the_global_generator_alone():
    before = torch.get_rng_state()
    a, b = AdversarialRegularizer(latent_dim=2, seed=3), AdversarialRegularizer(latent_dim=2, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q)
    assert torch.equal(a.draw_prior(5), b.draw_prior(5))
    assert not torch.equal(a.draw_prior(5), AdversarialRegularizer(latent_dim=2, seed=4).draw_prior(5))


def test_the_trainer_sees_no_discriminator_parameter_and_its_backward_never_reaches_one():
    objective = AdversarialRegularizer(latent_dim=2)
    assert objective.trainer_parameters() == [] and objective.batchable is False
    model = _aae()
    terms = objective(torch.rand(6, 3), model(torch.rand(6, 3)))
    assert set(terms) == {"loss", "recon", "adversarial", "discriminator"}
    terms["loss"].backward()
    assert all(p.grad is None for p in objective.discriminator.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_the_batched_engine_refuses_the_regulariser():
    with pytest.raises(TypeError, match="not batchable"):
        vaelib.fit_batched([_aae()], [AdversarialRegularizer(latent_dim=2)], torch.rand(10, 3), seeds=[0],
                           epochs=1, progress=False)


def test_overriding_draw_prior_alone_changes_the_prior_the_discriminator_is_trained_on():
    """The chapter's exercise 3 swaps the prior for a mixture by overriding ``draw_prior`` alone:
    the discriminator's loss, which its steps descend, must then see the subclass's draws."""
    seen = []

    class Shifted(AdversarialRegularizer):
        def draw_prior(self, n, like=None):
            return super().draw_prior(n, like) + 5.0

        def discriminator_loss(self, codes, prior):
            seen.append(prior)
            return super().discriminator_loss(codes, prior)

    vaelib.fit(_aae(), Shifted(latent_dim=2, seed=0), torch.rand(12, 3), epochs=2, batch_size=4,
               seed=0, progress=False)
    assert len(seen) == 6 and all(p.shape == (4, 2) and p.mean() > 4 for p in seen), seen


def test_regulariser_errors_are_clear():
    objective = AdversarialRegularizer(latent_dim=3)
    model = _aae()
    with pytest.raises(ValueError, match=r"shape \(n, 3\).*AdversarialRegularizer\(latent_dim=2\)"):
        objective(torch.rand(4, 3), model(torch.rand(4, 3)))
    with pytest.raises(RuntimeError, match="call the objective on a batch first"):
        AdversarialRegularizer(latent_dim=2).after_step({})


def test_the_two_players_losses_move_in_opposite_directions():
    """Training only the discriminator lowers its loss and raises the encoder's on fixed codes;
    moving only the codes against a fixed discriminator does the reverse."""
    objective = AdversarialRegularizer(latent_dim=2, seed=0, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    codes = 0.5 * torch.randn(256, 2, generator=g) + 1.5
    prior = torch.randn(256, 2, generator=g)

    def losses(z):
        with torch.no_grad():
            return objective.discriminator_loss(z, prior).item(), objective.generator_loss(z).item()

    d0, g0 = losses(codes)
    for _ in range(60):
        objective.step_discriminator(codes, prior)
    d1, g1 = losses(codes)
    assert d1 < d0 - 0.2 and g1 > g0 + 0.2, (d0, d1, g0, g1)

    moving = codes.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([moving], lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        objective.generator_loss(moving).backward()
        optimizer.step()
    d2, g2 = losses(moving.detach())
    assert g2 < g1 - 0.2 and d2 > d1 + 0.2, (d1, d2, g1, g2)


def test_the_discriminator_steps_are_adams_and_its_state_dict_carries_them():
    objective = AdversarialRegularizer(latent_dim=2, seed=1, lr=1e-2)
    reference = copy.deepcopy(objective.discriminator)
    adam = torch.optim.Adam(reference.parameters(), lr=1e-2, betas=DISCRIMINATOR_BETAS)
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(32, 2, generator=g) + 1, torch.randn(32, 2, generator=g)) for _ in range(6)]
    for i, (codes, prior) in enumerate(batches):
        objective.step_discriminator(codes, prior)
        adam.zero_grad()
        (F.softplus(-reference(prior)).mean() + F.softplus(reference(codes)).mean()).backward()
        adam.step()
        if i == 2:
            saved = copy.deepcopy(objective.state_dict())
    for p, q in zip(objective.discriminator.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    restored = AdversarialRegularizer(latent_dim=2, seed=9, lr=1e-2)
    restored.load_state_dict(saved)
    for codes, prior in batches[3:]:
        restored.step_discriminator(codes, prior)
    for p, q in zip(objective.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(p, q)


def test_after_step_descends_the_loss_forward_logged_with_or_without_gradients():
    """In training, after_step steps the discriminator down the loss that forward computed and
    logged; after a forward pass without gradients it computes that loss again. Either way the
    step is step_discriminator's on the batch's codes and prior draws."""
    x, model = torch.rand(8, 3), _aae()
    reference = AdversarialRegularizer(latent_dim=2, seed=0)
    codes, prior = model.encode(x).detach(), reference.draw_prior(8)
    logged_before_step = reference.step_discriminator(codes, prior)
    for gradients in (True, False):
        objective = AdversarialRegularizer(latent_dim=2, seed=0)
        with torch.set_grad_enabled(gradients):
            terms = objective(x, model(x))
        assert terms["discriminator"].item() == logged_before_step
        objective.after_step(terms)
        for (name, p), q in zip(objective.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(p, q), (gradients, name)


def test_fit_resumes_an_aae_exactly_from_a_checkpoint(tmp_path):
    x = cosine_surface(n=200, seed=0)

    def run(epochs, **kwargs):
        model, objective = _aae(), AdversarialRegularizer(latent_dim=2, hidden=(8,), seed=2)
        history = vaelib.fit(model, objective, x, epochs=epochs, batch_size=50, lr=1e-2, seed=1, progress=False,
                             **kwargs)
        return model, objective, history

    straight_model, straight_objective, straight = run(4)
    path = tmp_path / "aae.ckpt"
    run(2, checkpoint=path)
    model, objective, resumed = run(4, checkpoint=path, resume_from=path)
    assert resumed.terms == straight.terms
    for a, b in ((model, straight_model), (objective, straight_objective)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name


@pytest.mark.parametrize("build, x", [
    (lambda: _cvae(decoder="bernoulli"), _labelled()[2]),
    (lambda: _aae(in_dim=5), torch.rand(6, 5)),
])
def test_both_models_save_and_load_through_the_registry(tmp_path, build, x):
    model = build()
    path = vaelib.save_checkpoint(tmp_path / "model.ckpt", model)
    loaded = vaelib.load_model(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    assert {k: v for k, v in loaded.init_args.items() if k != "hidden"} == {
        k: v for k, v in model.init_args.items() if k != "hidden"}
    noise = torch.zeros(len(x), 2)
    kwargs = {"noise": noise} if isinstance(model, CVAE) else {}
    torch.testing.assert_close(loaded(x, **kwargs).recon, model(x, **kwargs).recon, rtol=0, atol=0)


def test_the_regulariser_pulls_the_aggregate_posterior_towards_the_prior():
    """On 500 digits, the same autoencoder trained with the regulariser has codes much closer to
    N(0, I) (MMD^2 with one kernel) than one trained on reconstruction alone: 14 to 50 times
    closer with seeds 0 to 3 when this test was written; asserted: 5 times."""
    x = load_digits()[0][:500]
    codes = {}
    for name, objective in (("ae", vaelib.Reconstruction()),
                            ("aae", AdversarialRegularizer(latent_dim=2, hidden=(32, 32), lr=3e-3, seed=0))):
        vaelib.seed_everything(0)
        model = AAE(in_dim=64, latent_dim=2, hidden=(32,), activation="relu")
        vaelib.fit(model, objective, x, epochs=20, batch_size=25, lr=3e-3, seed=0, progress=False)
        with torch.no_grad():
            codes[name] = model.encode(x)
    prior = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    bandwidth = median_bandwidth(prior)
    ae, aae = (mmd2(codes[name], prior, bandwidth=bandwidth) for name in ("ae", "aae"))
    assert aae < ae / 5, (ae, aae)


# --- plots --------------------------------------------------------------------------------------

def test_labelled_mosaic_labels_each_column():
    ax = plots.labelled_mosaic(torch.rand(2, 3, 16), (4, 4), [7, 8, 9], xlabel="label")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7", "8", "9"]
    with pytest.raises(ValueError, match="one column per label"):
        plots.labelled_mosaic(torch.rand(2, 3, 16), (4, 4), [7, 8])
    matplotlib.pyplot.close("all")


def test_codes_against_prior_draws_one_panel_per_model():
    fig = plots.codes_against_prior({"a": torch.randn(20, 2), "b": torch.randn(20, 2)}, torch.randn(30, 2))
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["a", "b"]
    matplotlib.pyplot.close(fig)
