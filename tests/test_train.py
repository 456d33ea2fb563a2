import pytest
import torch

import vaelib
from vaelib.objectives import Objective


def _train_vae(x, seed, epochs=3):
    vaelib.seed_everything(seed)
    model = vaelib.VAE(3)
    history = vaelib.fit(model, vaelib.ELBO(), x, epochs=epochs, batch_size=64, lr=3e-3, seed=seed, progress=False)
    return model, history


def test_short_training_lowers_the_loss(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3)
    history = vaelib.fit(model, vaelib.Reconstruction(), cosine_small, epochs=15, batch_size=64, lr=3e-3,
                         progress=False)
    assert len(history) == 15 and set(history.terms) == {"loss", "recon"}
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_history_logs_every_named_term(cosine_small):
    _, history = _train_vae(cosine_small, seed=0)
    assert set(history.terms) == {"loss", "recon", "kl"}
    final = history.final()
    assert final["loss"] == pytest.approx(final["recon"] + final["kl"], rel=1e-5)


def test_same_seed_same_history_different_seed_different_history(cosine_small):
    m1, h1 = _train_vae(cosine_small, seed=5)
    m2, h2 = _train_vae(cosine_small, seed=5)
    _, h3 = _train_vae(cosine_small, seed=6)
    assert h1.terms == h2.terms
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h1.terms != h3.terms


class _ExplodesAt(Objective):
    """Reconstruction loss that turns NaN at a given call: to exercise the non-finite guard."""

    def __init__(self, at_call):
        super().__init__()
        self.at_call, self.calls = at_call, 0

    def forward(self, x, out):
        self.calls += 1
        recon = (x - out.recon).pow(2).sum(-1).mean()
        if self.calls >= self.at_call:
            recon = recon * float("nan")
        return {"loss": recon, "recon": recon}


def test_non_finite_loss_stops_with_epoch_step_and_term(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3)
    steps_per_epoch = 512 // 128
    with pytest.raises(vaelib.TrainingDiverged, match=r"epoch 3, step 2: the term 'loss' is not finite") as info:
        vaelib.fit(model, _ExplodesAt(2 * steps_per_epoch + 2), cosine_small, epochs=5, batch_size=128,
                   progress=False)
    assert len(info.value.history) == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"epochs": 0}, ValueError, "epochs must be a positive integer, got 0"),
    ({"batch_size": -1}, ValueError, "batch_size must be a positive integer, got -1"),
    ({"lr": 0.0}, ValueError, "lr must be > 0, got 0.0"),
    ({"optimizer": "lbfgs"}, ValueError, r"optimizer must be one of \['adam', 'sgd'\], got 'lbfgs'"),
])
def test_fit_rejects_bad_arguments(cosine_small, kwargs, error, message):
    with pytest.raises(error, match=message):
        vaelib.fit(vaelib.Autoencoder(3), vaelib.Reconstruction(), cosine_small, progress=False, **kwargs)


def test_fit_rejects_bad_data_and_objective():
    with pytest.raises(ValueError, match="x holds non-finite values"):
        vaelib.fit(vaelib.Autoencoder(3), vaelib.Reconstruction(), torch.tensor([[float("inf"), 0.0, 0.0]]))
    with pytest.raises(TypeError, match="objective must be a vaelib.objectives.Objective"):
        vaelib.fit(vaelib.Autoencoder(3), torch.nn.MSELoss(), torch.zeros(4, 3))


def test_seed_everything_rejects_non_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        vaelib.seed_everything("0")
