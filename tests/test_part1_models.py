"""Part I's models, objectives and layer-wise pre-training: tied, denoising, sparse, convolutional."""
import pytest
import torch
from torch import nn

import vaelib
from vaelib.checkpoint import save_checkpoint
from vaelib.models import load_model
from vaelib.models import ModelOutput
from vaelib.nn import TiedLinear, corrupt, parameter_count
from vaelib.pretrain import layer_blocks, pretrain_layerwise


@pytest.fixture
def images():
    """64 smooth-ish 8x8 'images' in [0, 1], flat: enough structure for a short fit to learn."""
    g = torch.Generator().manual_seed(3)
    base = torch.rand(4, 64, generator=g)
    weights = torch.rand(64, 4, generator=g)
    return (weights @ base / 4).clamp(0, 1)


# --- TiedLinear and the tied autoencoder -------------------------------------------------------

def test_tied_linear_is_the_transpose_and_shares_the_parameter():
    source = nn.Linear(5, 3)
    tied = TiedLinear(source)
    h = torch.randn(4, 3)
    assert torch.allclose(tied(h), h @ source.weight + tied.bias, atol=1e-6)
    assert tied.weight is source.weight and (tied.in_features, tied.out_features) == (3, 5)
    tied(h).sum().backward()
    assert source.weight.grad is not None and source.weight.grad.shape == (3, 5)
    with pytest.raises(TypeError, match="source must be a torch.nn.Linear, got Conv1d"):
        TiedLinear(nn.Conv1d(1, 1, 1))


def test_tied_autoencoder_halves_the_weights_and_mirrors_the_encoder():
    vaelib.seed_everything(0)
    untied = vaelib.Autoencoder(64, latent_dim=2, hidden=(32, 16), activation="elu")
    vaelib.seed_everything(0)
    tied = vaelib.TiedAutoencoder(64, latent_dim=2, hidden=(32, 16), activation="elu")
    weights = 64 * 32 + 32 * 16 + 16 * 2
    biases_each_way = (32 + 16 + 2, 16 + 32 + 64)
    assert parameter_count(untied) == 2 * weights + sum(biases_each_way)
    assert parameter_count(tied) == weights + sum(biases_each_way)
    # same seed -> same encoder: the tied model differs only in its decoder
    assert all(torch.equal(a, b) for a, b in zip(untied.encoder.parameters(), tied.encoder.parameters()))
    decoder_linears = [m for m in tied.decoder if isinstance(m, TiedLinear)]
    encoder_linears = [m for m in tied.encoder if isinstance(m, nn.Linear)]
    assert [d.weight for d in decoder_linears] == [e.weight for e in reversed(encoder_linears)]
    out = tied(torch.rand(7, 64))
    assert out.recon.shape == (7, 64) and out.z.shape == (7, 2)


def test_tied_autoencoder_trains_and_survives_a_checkpoint(images, tmp_path):
    vaelib.seed_everything(0)
    model = vaelib.TiedAutoencoder(64, latent_dim=4, hidden=(16,), activation="elu")
    history = vaelib.fit(model, vaelib.Reconstruction(), images, epochs=40, batch_size=64, lr=1e-2,
                         progress=False)
    assert history["recon"][-1] < 0.5 * history["recon"][0]
    save_checkpoint(tmp_path / "tied.safetensors", model)
    again = load_model(tmp_path / "tied.safetensors")
    assert again.decoder[-1].weight is again.encoder[0].weight  # still tied after loading
    assert torch.equal(again(images).recon, model(images).recon)


# --- layer-wise pre-training -------------------------------------------------------------------

def test_layer_blocks_split_after_each_linear_and_keep_the_modules():
    stack = vaelib.Autoencoder(8, latent_dim=2, hidden=(6, 4), activation="elu").encoder
    blocks = layer_blocks(stack)
    assert [[type(m).__name__ for m in b] for b in blocks] == [["Linear", "ELU"], ["Linear", "ELU"], ["Linear"]]
    assert blocks[0][0] is stack[0]
    with pytest.raises(ValueError, match="must start with a linear layer, got ELU"):
        layer_blocks(nn.Sequential(nn.ELU(), nn.Linear(2, 2)))


@pytest.mark.parametrize("cls", [vaelib.Autoencoder, vaelib.TiedAutoencoder])
def test_pretraining_trains_each_level_in_place(images, cls):
    vaelib.seed_everything(0)
    model = cls(64, latent_dim=4, hidden=(16, 8), activation="elu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    histories = pretrain_layerwise(model, images, epochs=20, batch_size=16, lr=1e-2, progress=False)
    assert len(histories) == 3
    assert all(h["recon"][-1] < h["recon"][0] for h in histories)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(before)  # every layer of the deep model was trained, none copied
    # Level 0 is the outermost pair: its error equals the shallow AE x -> enc_0 -> dec_last on the data
    with torch.no_grad():
        level0 = model.decoder[-1](model.encoder[1](model.encoder[0](images)))
    assert vaelib.losses.reconstruction_error(images, level0).item() == pytest.approx(
        histories[0]["recon"][-1], rel=0.5)


def test_pretraining_is_deterministic_and_checks_its_model(images):
    states = []
    for _ in range(2):
        vaelib.seed_everything(1)
        model = vaelib.Autoencoder(64, latent_dim=2, hidden=(8,), activation="elu")
        pretrain_layerwise(model, images, epochs=2, batch_size=16, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    with pytest.raises(TypeError, match="must have MLP .* encoder and decoder attributes"):
        pretrain_layerwise(vaelib.ConvAutoencoder(), images, progress=False)
    lopsided = vaelib.Autoencoder(64, latent_dim=2, hidden=(8,))
    lopsided.decoder = nn.Sequential(nn.Linear(2, 64))
    with pytest.raises(ValueError, match="the encoder has 2 linear layers but the decoder 1"):
        pretrain_layerwise(lopsided, images, progress=False)


# --- corruption and the denoising autoencoder ----------------------------------------------------

def test_corrupt_masks_and_adds_noise_at_the_requested_rates():
    x = torch.ones(200, 50)
    g = torch.Generator().manual_seed(0)
    masked = corrupt(x, mask_prob=0.3, generator=g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert (masked == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    noisy = corrupt(x, noise_std=0.5, generator=g)
    assert (noisy - x).std().item() == pytest.approx(0.5, rel=0.03)
    assert torch.equal(corrupt(x, 0.5, 0.3, torch.Generator().manual_seed(1)),
                       corrupt(x, 0.5, 0.3, torch.Generator().manual_seed(1)))
    assert torch.equal(corrupt(x), x)
    with pytest.raises(ValueError, match="mask_prob must be < 1"):
        corrupt(x, mask_prob=1.0)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0, got -0.1"):
        corrupt(x, noise_std=-0.1)


def test_denoising_autoencoder_corrupts_only_in_training_mode():
    vaelib.seed_everything(0)
    model = vaelib.DenoisingAutoencoder(16, latent_dim=3, hidden=(8,), activation="elu", mask_prob=0.5)
    x = torch.rand(10, 16)
    clean_recon = model.decoder(model.encoder(x))
    assert not torch.allclose(model(x).recon, clean_recon)      # training mode: a corrupted view
    model.eval()
    assert torch.allclose(model(x).recon, clean_recon)          # eval mode: the input as it is
    with pytest.raises(ValueError, match="needs some corruption"):
        vaelib.DenoisingAutoencoder(16)


def test_denoising_training_beats_plain_training_on_corrupted_inputs(images):
    """The claim of the denoising chapter, in small: trained on corrupted copies, the DAE reconstructs
    clean images from corrupted ones better than the same network trained on clean images."""
    noisy = corrupt(images, noise_std=0.3, generator=torch.Generator().manual_seed(9))
    errors = {}
    for name, model in [("plain", vaelib.Autoencoder(64, 8, (32,), "elu")),
                        ("dae", vaelib.DenoisingAutoencoder(64, 8, (32,), "elu", noise_std=0.3))]:
        vaelib.seed_everything(0)
        model.load_state_dict(vaelib.Autoencoder(64, 8, (32,), "elu").state_dict())
        vaelib.fit(model, vaelib.Reconstruction(), images, epochs=150, batch_size=64, lr=1e-2, progress=False)
        model.eval()
        with torch.no_grad():
            errors[name] = vaelib.losses.reconstruction_error(images, model(noisy).recon).item()
    assert errors["dae"] < errors["plain"], errors


# --- the sparse autoencoder and its objective ----------------------------------------------------

def test_sparse_autoencoder_code_is_the_hidden_layer():
    model = vaelib.SparseAutoencoder(64, code_dim=100)
    out = model(torch.rand(5, 64))
    assert out.z.shape == (5, 100) and out.recon.shape == (5, 64)
    assert out.z.min() > 0 and out.z.max() < 1
    assert model.atoms.shape == (100, 64)
    h = torch.zeros(1, 100)
    h[0, 7] = 2.0
    assert torch.allclose(model.decode(h), model.decoder.bias + 2.0 * model.atoms[7])


def test_sparse_objective_terms_by_hand():
    x = torch.zeros(2, 3)
    out = ModelOutput(recon=torch.ones(2, 3), z=torch.tensor([[0.1, 0.3], [0.3, 0.1]]))
    l1 = vaelib.SparseReconstruction(penalty="l1", weight=2.0)(x, out)
    assert l1["recon"].item() == pytest.approx(3.0)
    assert l1["penalty"].item() == pytest.approx(0.4)
    assert l1["loss"].item() == pytest.approx(3.0 + 2.0 * 0.4)
    kl = vaelib.SparseReconstruction(penalty="kl", weight=1.0, rho=0.2)(x, out)
    assert kl["penalty"].item() == pytest.approx(0.0, abs=1e-6)    # both units fire at rate 0.2
    assert kl["mean_activation"].item() == pytest.approx(0.2)
    off = vaelib.SparseReconstruction(penalty="kl", rho=0.05)(x, out)
    assert off["penalty"].item() > 0


def test_sparse_objective_rejects_bad_settings_and_unbounded_codes():
    with pytest.raises(ValueError, match=r"penalty must be one of \['kl', 'l1'\], got 'l2'"):
        vaelib.SparseReconstruction(penalty="l2")
    with pytest.raises(ValueError, match="rho must lie strictly between 0 and 1"):
        vaelib.SparseReconstruction(rho=1.0)
    out = ModelOutput(recon=torch.zeros(2, 3), z=torch.tensor([[-1.0, 2.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"needs code activations in \[0, 1\].*got values in \[-1, 2\]"):
        vaelib.SparseReconstruction(penalty="kl")(torch.zeros(2, 3), out)


def test_kl_penalty_pulls_the_firing_rate_towards_rho(images):
    for rho in (0.05, 0.3):
        vaelib.seed_everything(0)
        model = vaelib.SparseAutoencoder(64, code_dim=96)
        history = vaelib.fit(model, vaelib.SparseReconstruction("kl", weight=3.0, rho=rho), images,
                             epochs=100, batch_size=64, lr=3e-2, progress=False)
        assert abs(history["mean_activation"][-1] - rho) < 0.03, (rho, history["mean_activation"][-1])
        assert history["penalty"][-1] < 0.1 * history["penalty"][0]


# --- the convolutional autoencoder ------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["unpool", "transposed"])
@pytest.mark.parametrize("latent_dim", [None, 10])
def test_conv_autoencoder_shapes(decoder, latent_dim):
    model = vaelib.ConvAutoencoder((8, 8), channels=(4, 6), latent_dim=latent_dim, decoder=decoder)
    x = torch.rand(5, 64)
    out = model(x)
    assert out.recon.shape == (5, 64)
    assert out.z.shape == (5, latent_dim or 6 * 2 * 2) and model.latent_dim == out.z.shape[1]
    z, indices = model.encode_with_indices(x)
    assert [tuple(i.shape) for i in indices] == [(5, 4, 4, 4), (5, 6, 2, 2)]
    assert torch.equal(model.decode(z, indices), out.recon)


def test_unpooling_puts_values_back_where_the_maxima_were():
    model = vaelib.ConvAutoencoder((4, 4), channels=(1,), decoder="unpool")
    x = torch.zeros(1, 16)
    x[0, 5] = 1.0      # row 1, col 1: the maximum of the top-left 2x2 window
    with torch.no_grad():
        h = model.down[0](x.reshape(1, 1, 4, 4))
        pooled, idx = model.pool(h)
        restored = model.unpool(pooled, idx)
    kept = restored != 0
    assert kept.sum() <= 4 and torch.equal(restored[kept], pooled.flatten()[pooled.flatten() != 0])
    assert all(h.flatten()[i] == restored.flatten()[i] for i in idx.flatten().tolist())


def test_unpool_decoder_needs_indices_and_transposed_does_not():
    unpool = vaelib.ConvAutoencoder(decoder="unpool", latent_dim=5)
    transposed = vaelib.ConvAutoencoder(decoder="transposed", latent_dim=5)
    z = torch.randn(3, 5)
    assert transposed.decode(z).shape == (3, 64)
    with pytest.raises(ValueError, match="the unpooling decoder needs the 2 pooling index tensors"):
        unpool.decode(z)


@pytest.mark.parametrize("decoder", ["unpool", "transposed"])
def test_conv_autoencoder_trains_with_fit(images, decoder):
    vaelib.seed_everything(0)
    model = vaelib.ConvAutoencoder(channels=(4, 8), latent_dim=8, decoder=decoder)
    history = vaelib.fit(model, vaelib.Reconstruction(), images, epochs=40, batch_size=64, lr=1e-2,
                         progress=False)
    assert history["recon"][-1] < 0.5 * history["recon"][0]


def test_conv_autoencoder_rejects_bad_configuration():
    with pytest.raises(ValueError, match=r"image_shape \(6, 6\) must be divisible by 4"):
        vaelib.ConvAutoencoder((6, 6), channels=(4, 8))
    with pytest.raises(ValueError, match=r"decoder must be one of \['transposed', 'unpool'\], got 'bilinear'"):
        vaelib.ConvAutoencoder(decoder="bilinear")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        vaelib.ConvAutoencoder(kernel_size=2)
    with pytest.raises(ValueError, match="x must have 64 features per row, got 784"):
        vaelib.ConvAutoencoder()(torch.rand(2, 784))


def test_parameter_count_counts_shared_weights_once():
    layer = nn.Linear(4, 3)
    both = nn.Sequential(layer, TiedLinear(layer))
    assert parameter_count(both) == 4 * 3 + 3 + 4
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        parameter_count([layer])


# --- the figure helpers these chapters added to vaelib.plots -------------------------------------

def test_image_rows_filter_mosaic_and_histograms_draw_what_they_are_given():
    import matplotlib
    matplotlib.use("Agg")
    from vaelib import plots

    fig = plots.image_rows({"clean": torch.rand(5, 64), "noisy": torch.rand(5, 64)}, (8, 8), title="t")
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["clean", "noisy"]
    weights = torch.zeros(3, 64)
    weights[0, 0], weights[1, 1], weights[2, 2] = 5.0, -0.1, 2.0
    ax = plots.filter_mosaic(weights, (8, 8), rows=1)
    canvas = ax.images[0].get_array()
    assert canvas.max() == 1.0 and canvas.min() == -1.0   # each filter scaled by its own largest |w|
    assert canvas.mask.sum() > 0                           # the gaps are masked (NaN), drawn grey
    ax = plots.overlaid_histograms({"a": torch.zeros(10), "b": torch.ones(10)}, xlabel="x", bins=4)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    matplotlib.pyplot.close("all")


# --- which of these models fit_batched trains --------------------------------------------------------

def test_sparse_objectives_train_in_fit_batched_as_in_fit(images):
    """The KL penalty's range check reads values, which fit_batched's vmap cannot: it runs in fit only,
    and the batched runs still give fit's numbers."""
    settings = dict(epochs=2, batch_size=32, lr=1e-2, progress=False)
    built = []
    for s, setting in [(0, dict(penalty="kl", weight=3.0, rho=0.1)), (1, dict(penalty="l1", weight=0.05))]:
        vaelib.seed_everything(s)
        built.append((vaelib.SparseAutoencoder(64, code_dim=32), vaelib.SparseReconstruction(**setting), s))
    histories = vaelib.fit_batched([m for m, _, _ in built], [o for _, o, _ in built], images,
                                   seeds=[s for _, _, s in built], backend="torch", **settings)
    for (model, objective, s), history in zip(built, histories):
        vaelib.seed_everything(s)
        alone = vaelib.SparseAutoencoder(64, code_dim=32)
        reference = vaelib.fit(alone, objective, images, seed=s, **settings)
        assert history["penalty"] == pytest.approx(reference["penalty"], rel=1e-4)
        torch.testing.assert_close(model.decoder.weight, alone.decoder.weight, rtol=1e-4, atol=1e-5)


def test_denoising_autoencoder_trains_in_fit_batched_with_each_runs_own_corruption(images):
    """fit_batched hands each run the corruption its seed draws in fit (random_draws), so the
    denoising model batches too (tests/test_engine_models.py compares every step with fit)."""
    settings = dict(epochs=1, batch_size=32, lr=1e-2, progress=False)
    models = []
    for s in (0, 1):
        vaelib.seed_everything(s)
        models.append(vaelib.DenoisingAutoencoder(64, latent_dim=4, noise_std=0.3, mask_prob=0.2))
    assert models[0].random_draws() == (("mask_uniform", "uniform", 64), ("gaussian", "normal", 64))
    histories = vaelib.fit_batched(models, [vaelib.Reconstruction(), vaelib.Reconstruction()], images, seeds=[0, 1],
                                   **settings)
    vaelib.seed_everything(1)
    alone = vaelib.DenoisingAutoencoder(64, latent_dim=4, noise_std=0.3, mask_prob=0.2)
    reference = vaelib.fit(alone, vaelib.Reconstruction(), images, seed=1, **settings)
    assert histories[1]["loss"] == pytest.approx(reference["loss"], rel=1e-5)


def test_denoising_autoencoder_inside_a_transform_needs_its_draws_passed_in(images):
    model = vaelib.DenoisingAutoencoder(64, latent_dim=4, noise_std=0.3)
    with pytest.raises(ValueError, match="needs its corruption's random numbers passed in \\(gaussian\\)"):
        torch.func.vmap(lambda x: model(x).recon, randomness="different")(images.reshape(4, 16, 64))
    given = torch.func.vmap(lambda x, g: model(x, gaussian=g).recon)(images.reshape(4, 16, 64),
                                                                      torch.zeros(4, 16, 64))
    model.eval()
    assert torch.allclose(given.reshape(64, 64), model(images).recon, atol=1e-6)
