"""vaelib.runs: the rules every run obeys, here the one settings object that every entry point hands
its training settings over in (``TrainingSettings``), checked once."""
import pytest
import torch

import vaelib
from vaelib.data import cosine_surface
from vaelib.runs import TrainingSettings, training_settings


@pytest.mark.parametrize("changes, error, message", [
    ({"epochs": 0}, ValueError, "epochs must be a positive integer, got 0"),
    ({"epochs": 2.5}, TypeError, "epochs must be an int"),
    ({"batch_size": -1}, ValueError, "batch_size must be a positive integer, got -1"),
    ({"lr": 0.0}, ValueError, "lr must be > 0"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0"),
    ({"optimizer": "adamw"}, ValueError, r"optimizer must be one of \['adam', 'sgd'\], got 'adamw'"),
    ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 2\*\*63\)"),
    ({"backend": "cuda"}, ValueError, r"backend must be one of \['auto', 'kernel', 'torch'\]"),
    ({"device": "gpu"}, ValueError, "device must be a torch.device or a name such as 'cpu'"),
    ({"device": 3.5}, ValueError, "device must be a torch.device or a name"),
])
def test_a_bad_setting_is_named_when_the_settings_are_made(changes, error, message):
    with pytest.raises(error, match=message):
        TrainingSettings(**changes)
    with pytest.raises(error, match=message):
        TrainingSettings().replace(**changes)


def test_settings_are_frozen_and_their_lr_a_float():
    settings = TrainingSettings(lr=1, device=torch.device("cpu"))
    assert settings.lr == 1.0 and isinstance(settings.lr, float)
    assert settings.to_dict() == {"epochs": 10, "batch_size": 100, "lr": 1.0, "optimizer": "adam", "seed": 0,
                                  "backend": "auto", "device": "cpu"}
    with pytest.raises(AttributeError):
        settings.epochs = 3


def test_keywords_replace_the_fields_of_the_settings():
    base = TrainingSettings(epochs=7, lr=0.01)
    assert training_settings(base, epochs=None, lr=0.5) == TrainingSettings(epochs=7, lr=0.5)
    assert training_settings(None, batch_size=32) == TrainingSettings(batch_size=32)
    with pytest.raises(TypeError, match="settings must be a vaelib.TrainingSettings or None, got dict"):
        training_settings({"epochs": 3})
    with pytest.raises(TypeError, match="'learning_rate' is not a training setting"):
        training_settings(None, learning_rate=0.1)


def _run(settings=None, **keywords):
    vaelib.seed_everything(0)
    model, objective = vaelib.VAE(3, hidden=(8,)), vaelib.KoLagrangian()
    history = vaelib.fit(model, objective, cosine_surface(96, seed=2), settings, progress=False, **keywords)
    return history, model


def test_fit_trains_the_same_run_from_settings_or_keywords():
    by_settings, model_a = _run(TrainingSettings(epochs=2, batch_size=32, lr=3e-3, seed=4))
    by_keywords, model_b = _run(epochs=2, batch_size=32, lr=3e-3, seed=4)
    overridden, model_c = _run(TrainingSettings(epochs=5, batch_size=32, lr=3e-3, seed=9), epochs=2, seed=4)
    assert by_settings.terms == by_keywords.terms == overridden.terms
    for name, tensor in model_a.state_dict().items():
        assert torch.equal(tensor, model_b.state_dict()[name]) and torch.equal(tensor, model_c.state_dict()[name])


def test_fit_refuses_the_kernel_backend():
    with pytest.raises(ValueError, match="backend='kernel' is fit_batched's C kernel; fit trains with PyTorch"):
        _run(TrainingSettings(backend="kernel", epochs=1))


def test_fit_batched_takes_the_same_settings():
    x = cosine_surface(96, seed=2)

    def batched(settings=None, **keywords):
        vaelib.seed_everything(1)
        models, objectives = [vaelib.VAE(3, hidden=(8,))], [vaelib.ELBO()]
        return vaelib.fit_batched(models, objectives, x, settings, seeds=[1], progress=False, **keywords)[0]

    settings = TrainingSettings(epochs=2, batch_size=32, lr=3e-3, backend="torch")
    assert batched(settings).terms == batched(epochs=2, batch_size=32, lr=3e-3, backend="torch").terms
