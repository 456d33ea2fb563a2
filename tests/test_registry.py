"""The seam a user builds on: a model class defined outside vaelib, registered, trained with
vaelib's objectives and trainer, saved and rebuilt from the checkpoint alone."""
import pytest
import torch
from torch import nn

import vaelib
from vaelib.models import ModelOutput, build_model, registered_models


@vaelib.register_model
class ResidualGaussianVAE(nn.Module):
    """A user's VAE: a linear encoder to (mu, logvar) and a decoder with a skip connection.

    It knows nothing of vaelib but the contract: forward returns a ModelOutput with mu and logvar.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, width: int = 16):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Linear(in_dim, 2 * latent_dim)
        self.lift = nn.Linear(latent_dim, in_dim)
        self.refine = nn.Sequential(nn.Linear(in_dim, width), nn.Tanh(), nn.Linear(width, in_dim))

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def decode(self, z):
        base = self.lift(z)
        return base + self.refine(base)

    def forward(self, x, noise=None):
        mu, logvar = self.encode(x)
        noise = torch.randn_like(mu) if noise is None else noise
        z = mu + torch.exp(0.5 * logvar) * noise
        return ModelOutput(recon=self.decode(z), z=z, mu=mu, logvar=logvar)


def test_a_model_defined_outside_vaelib_trains_saves_and_reloads(tmp_path, cosine_small):
    assert registered_models()["ResidualGaussianVAE"] is ResidualGaussianVAE
    vaelib.seed_everything(0)
    model = ResidualGaussianVAE(in_dim=3, width=8)
    assert model.init_args == {"in_dim": 3, "latent_dim": 2, "width": 8}
    path = tmp_path / "user.ckpt"
    history = vaelib.fit(model, vaelib.ELBO(), cosine_small, epochs=4, batch_size=64, lr=1e-2, seed=0,
                         progress=False, checkpoint=path)
    assert history["loss"][-1] < history["loss"][0], history["loss"]

    reloaded = vaelib.load_model(path)
    assert type(reloaded) is ResidualGaussianVAE and reloaded.init_args == model.init_args
    noise = torch.zeros(len(cosine_small), 2)
    with torch.no_grad():
        assert torch.equal(reloaded(cosine_small, noise).recon, model(cosine_small, noise).recon)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


def test_build_model_makes_a_fresh_registered_model():
    model = build_model("ResidualGaussianVAE", in_dim=5, latent_dim=3)
    assert isinstance(model, ResidualGaussianVAE) and model.encoder.out_features == 6
    with pytest.raises(ValueError, match="not a registered model class"):
        build_model("NoSuchModel", in_dim=5)


def test_a_second_class_with_a_registered_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        vaelib.register_model(type("ResidualGaussianVAE", (nn.Module,), {"__init__": lambda self: None}))
