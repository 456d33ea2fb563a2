"""vaelib.wake_sleep: the two phases of wake-sleep (Hinton et al. 1995) and its training loop."""
import pytest
import torch

import vaelib
from vaelib.data import load_digits
from vaelib.estimators import decoder_log_likelihood, iwae_bound
from vaelib.wake_sleep import dream, fit_wake_sleep, recognition_codes, recognition_nll, sleep_step, wake_step


def _model(decoder: str = "bernoulli", in_dim: int = 64) -> vaelib.VAE:
    vaelib.seed_everything(0)
    return vaelib.VAE(in_dim, latent_dim=2, hidden=(16,), activation="tanh", decoder=decoder)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    x, _ = load_digits()
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(0))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(p, before[name]) for name, p in module.named_parameters())


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_the_wake_step_lowers_the_generative_nll_at_its_codes_and_leaves_the_encoder(digits, decoder):
    model, x = _model(decoder), digits[:100]
    codes = recognition_codes(model, x, torch.Generator().manual_seed(5))  # what wake_step draws
    before = -decoder_log_likelihood(model, x, codes).mean().item()
    encoder = _snapshot(model.encoder)
    optimizer = torch.optim.SGD(model.decoder.parameters(), lr=1e-3)
    reported = wake_step(model, x, optimizer, torch.Generator().manual_seed(5))
    after = -decoder_log_likelihood(model, x, codes).mean().item()
    assert reported == pytest.approx(before, rel=1e-6)
    assert after < before and _unchanged(model.encoder, encoder)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_the_sleep_step_raises_the_recognition_likelihood_of_its_dreams_and_leaves_the_decoder(decoder):
    model = _model(decoder)
    z, x = dream(model, 200, torch.Generator().manual_seed(6))           # what sleep_step draws
    before = recognition_nll(model, z, x).mean().item()
    decoder_weights = _snapshot(model.decoder)
    optimizer = torch.optim.SGD(model.encoder.parameters(), lr=1e-3)
    reported = sleep_step(model, 200, optimizer, torch.Generator().manual_seed(6))
    after = recognition_nll(model, z, x).mean().item()
    assert reported == pytest.approx(before, rel=1e-6)
    assert after < before and _unchanged(model.decoder, decoder_weights)


def test_dreams_are_drawn_from_the_generative_model():
    model = _model("bernoulli")
    z, x = dream(model, 4000, torch.Generator().manual_seed(0))
    assert z.shape == (4000, 2) and x.shape == (4000, 64)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # pixel frequencies match the decoded probabilities (standard error about 0.008 per pixel)
    assert (x.mean(dim=0) - model.decode(z).mean(dim=0)).abs().max() < 0.04
    assert z.mean(dim=0).abs().max() < 0.1 and (z.std(dim=0) - 1).abs().max() < 0.1


def test_fit_wake_sleep_raises_the_elbo_and_is_reproducible(digits):
    train, test = digits[:1500], digits[1500:]
    model = _model()
    start = iwae_bound(model, test, 1, generator=torch.Generator().manual_seed(0)).mean().item()
    seen = []
    history = fit_wake_sleep(model, train, epochs=3, lr=3e-3, seed=1, progress=False,
                             on_epoch_end=lambda epoch, means: seen.append(epoch))
    end = iwae_bound(model, test, 1, generator=torch.Generator().manual_seed(0)).mean().item()
    assert end > start + 5, (start, end)
    assert seen == [0, 1, 2] and len(history) == 3 and set(history.terms) == {"wake", "sleep"}
    assert history["wake"][-1] < history["wake"][0]
    again = _model()
    fit_wake_sleep(again, train, epochs=3, lr=3e-3, seed=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_fit_wake_sleep_refuses_bad_input_with_a_clear_message(digits):
    model = _model()
    with pytest.raises(TypeError, match="vaelib.VAE"):
        fit_wake_sleep(vaelib.Autoencoder(64), digits)
    with pytest.raises(ValueError, match="features"):
        fit_wake_sleep(model, digits[:, :10])
    with pytest.raises(ValueError, match="epochs"):
        fit_wake_sleep(model, digits, epochs=0)
    with pytest.raises(TypeError, match="dtype"):
        fit_wake_sleep(model, digits.double())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_wake_sleep(model, digits * 2)


def test_a_diverging_run_stops_with_the_last_good_model(digits):
    model = _model()
    good = _snapshot(model)
    with pytest.raises(vaelib.TrainingDiverged, match="not finite") as caught:
        fit_wake_sleep(model, digits[:200], epochs=2, lr=1e30, progress=False)
    assert caught.value.epoch == 1 and _unchanged(model, good)
