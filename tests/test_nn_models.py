import pytest
import torch

import vaelib
from vaelib.nn import ParametricTanh, activation, mlp


def test_parametric_tanh_value_and_gradients():
    act = ParametricTanh(a=2.0, b=0.5)
    x = torch.linspace(-3, 3, 7)
    assert torch.allclose(act(x), 2.0 * torch.tanh(0.5 * x))
    act(x).sum().backward()
    assert act.a.grad is not None and act.b.grad is not None


def test_mlp_layers_and_shapes():
    net = mlp([3, 32, 4], "ptanh")
    assert [type(m).__name__ for m in net] == ["Linear", "ParametricTanh", "Linear"]
    assert net(torch.zeros(5, 3)).shape == (5, 4)
    assert type(mlp([2, 8], "relu", final_activation="sigmoid")[-1]).__name__ == "Sigmoid"


def test_unknown_activation_and_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'swish'"):
        activation("swish")
    with pytest.raises(ValueError, match="sizes must list at least"):
        mlp([3])
    with pytest.raises(ValueError, match=r"sizes\[1\] must be a positive integer, got 0"):
        mlp([3, 0, 2])


def test_autoencoder_shapes():
    model = vaelib.Autoencoder(3, latent_dim=2, hidden=(32,))
    x = torch.randn(10, 3)
    out = model(x)
    assert out.recon.shape == (10, 3) and out.z.shape == (10, 2) and out.mu is None
    assert model.decode(model.encode(x)).shape == (10, 3)


def test_autoencoder_with_a_bernoulli_decoder_is_scored_by_cross_entropy():
    vaelib.seed_everything(0)
    gaussian = vaelib.Autoencoder(6, latent_dim=2, hidden=(8,))
    vaelib.seed_everything(0)
    bernoulli = vaelib.Autoencoder(6, latent_dim=2, hidden=(8,), decoder="bernoulli")
    x = torch.rand(10, 6)
    out, logits = bernoulli(x), gaussian(x).recon  # the same weights: the decoder's output as logits
    assert out.recon_is_logits and torch.equal(out.recon, logits)
    z = bernoulli.encode(x)
    assert torch.allclose(bernoulli.decode(z), torch.sigmoid(logits))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 10
    assert torch.allclose(vaelib.Reconstruction()(x, out)["loss"], expected)
    assert bernoulli.init_args["decoder"] == "bernoulli"
    with pytest.raises(ValueError, match=r"decoder must be one of \['bernoulli', 'gaussian'\], got 'mse'"):
        vaelib.Autoencoder(3, decoder="mse")


@pytest.mark.parametrize("decoder", ["gaussian", "bernoulli"])
def test_vae_shapes_and_sampling(decoder):
    model = vaelib.VAE(6, latent_dim=2, hidden=(16, 8), decoder=decoder)
    x = torch.rand(10, 6)
    out = model(x)
    assert out.recon.shape == (10, 6) and out.mu.shape == out.logvar.shape == out.z.shape == (10, 2)
    assert out.recon_is_logits == (decoder == "bernoulli")
    samples = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 6) and samples.dtype == torch.float32
    if decoder == "bernoulli":
        assert samples.min() >= 0 and samples.max() <= 1
    again = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_reparameterize_has_the_right_moments_and_gradient():
    mu = torch.full((200_000, 1), 2.0, requires_grad=True)
    logvar = torch.full((200_000, 1), 2 * torch.log(torch.tensor(0.5)).item(), requires_grad=True)
    z = vaelib.VAE.reparameterize(mu, logvar)
    assert abs(z.mean().item() - 2.0) < 0.01 and abs(z.std().item() - 0.5) < 0.01
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))


@pytest.mark.parametrize("bad, error, message", [
    (torch.zeros(4, 5), ValueError, "x must have 3 features per row, got 5"),
    (torch.zeros(4), ValueError, r"x must have shape \(n, d\), got shape \(4,\)"),
    (torch.zeros(4, 3, dtype=torch.int64), TypeError, "x must be a floating-point tensor"),
    (torch.zeros(0, 3), ValueError, "x is empty"),
    ([[0.0, 1.0, 2.0]], TypeError, "x must be a torch.Tensor"),
])
def test_models_reject_bad_input(bad, error, message):
    for model in (vaelib.Autoencoder(3), vaelib.VAE(3)):
        with pytest.raises(error, match=message):
            model(bad)


def test_bad_model_configuration():
    with pytest.raises(ValueError, match=r"decoder must be one of \['bernoulli', 'gaussian'\], got 'poisson'"):
        vaelib.VAE(3, decoder="poisson")
    with pytest.raises(ValueError, match="latent_dim must be a positive integer, got 0"):
        vaelib.Autoencoder(3, latent_dim=0)
