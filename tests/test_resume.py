"""fit with checkpoints: resuming equals not stopping, and a diverging run keeps its last good state."""
import pytest
import torch

import vaelib
from vaelib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaelib.objectives import Objective, reconstruction_term

EPOCHS = 5
SETTINGS = dict(batch_size=128, lr=3e-3, seed=7, progress=False)


def _fresh(init_seed=0, alpha_init=1.0):
    """A VAE (random noise in every step) and Ko's objective (a learned alpha): all state kinds."""
    vaelib.seed_everything(init_seed)
    return vaelib.VAE(3, hidden=(16,)), vaelib.KoLagrangian(alpha_init=alpha_init)


def _assert_same_run(a, b):
    (model_a, objective_a, history_a), (model_b, objective_b, history_b) = a, b
    assert history_a.terms == history_b.terms  # every term of every epoch, exactly
    for (name, pa), pb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert torch.equal(objective_a.alpha, objective_b.alpha)


@pytest.fixture
def uninterrupted(cosine_small):
    model, objective = _fresh()
    history = vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, **SETTINGS)
    return model, objective, history


@pytest.mark.parametrize("stop_after", [1, 3])
def test_stopping_and_resuming_gives_exactly_the_uninterrupted_run(cosine_small, tmp_path, uninterrupted, stop_after):
    path = tmp_path / "run.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=stop_after, checkpoint=path, **SETTINGS)
    torch.manual_seed(123)  # whatever happens to the global generator in between
    model, objective = _fresh(init_seed=99, alpha_init=5.0)  # a new process: other weights and alpha
    history = vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, resume_from=path, **SETTINGS)
    assert len(history) == EPOCHS
    _assert_same_run((model, objective, history), uninterrupted)


def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint(cosine_small, tmp_path, uninterrupted):
    path = tmp_path / "run.ckpt"

    def crash_in_epoch_4(epoch, means):
        if epoch == 3:
            raise KeyboardInterrupt

    model, objective = _fresh()
    with pytest.raises(KeyboardInterrupt):
        vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, checkpoint=path, on_epoch_end=crash_in_epoch_4,
                   **SETTINGS)
    assert len(load_checkpoint(path).history["loss"]) == 3  # the interrupted epoch was never saved
    model, objective = _fresh(init_seed=5)
    history = vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, checkpoint=path, resume_from=path,
                         **SETTINGS)
    _assert_same_run((model, objective, history), uninterrupted)
    assert load_checkpoint(path).history == history.terms


def test_checkpoint_every_saves_on_schedule_and_after_the_last_epoch(cosine_small, tmp_path):
    saved_lengths = []
    path = tmp_path / "run.ckpt"

    def record(epoch, means):
        if path.exists():
            saved_lengths.append(len(load_checkpoint(path).history["loss"]))

    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, checkpoint=path, checkpoint_every=2,
               on_epoch_end=record, **SETTINGS)
    assert saved_lengths == [2, 2, 4]  # what the file held when epochs 3, 4 and 5 ended
    ckpt = load_checkpoint(path)
    assert len(ckpt.history["loss"]) == EPOCHS and ckpt.fit_settings["seed"] == SETTINGS["seed"]
    rebuilt = vaelib.load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))


def test_resuming_a_finished_run_trains_nothing(cosine_small, tmp_path, uninterrupted):
    path = tmp_path / "run.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, checkpoint=path, **SETTINGS)
    model, objective = _fresh(init_seed=4)
    history = vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, resume_from=path, **SETTINGS)
    _assert_same_run((model, objective, history), uninterrupted)


def test_resume_may_change_the_learning_rate(cosine_small, tmp_path):
    path = tmp_path / "run.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=1, checkpoint=path, **SETTINGS)
    seen = []
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=2, resume_from=path, **{**SETTINGS, "lr": 1e-4},
               on_epoch_end=lambda epoch, means: seen.append(epoch))
    assert seen == [1]
    assert load_checkpoint(path).optimizer_state["param_groups"][0]["lr"] == SETTINGS["lr"]


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 64}, r"was trained with batch_size=128, got batch_size=64; resuming must repeat the run's"),
    ({"seed": 8}, r"was trained with seed=7, got seed=8"),
    ({"optimizer": "sgd"}, r"was trained with optimizer='adam', got optimizer='sgd'"),
    ({"epochs": 1}, r"epochs=1 is less than the 2 epochs already in .*run\.ckpt; epochs is the total"),
])
def test_resume_refuses_a_different_run(cosine_small, tmp_path, change, message):
    path = tmp_path / "run.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=2, checkpoint=path, **SETTINGS)
    model, objective = _fresh()
    kwargs = {**SETTINGS, "epochs": 3, **change}
    with pytest.raises(ValueError, match=message):
        vaelib.fit(model, objective, cosine_small, resume_from=path, **kwargs)


def test_resume_refuses_other_data_other_models_and_foreign_files(cosine_small, tmp_path):
    path = tmp_path / "run.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=1, checkpoint=path, **SETTINGS)
    other = cosine_small.clone()
    other[0, 0] += 1e-3
    with pytest.raises(ValueError, match=r"x is not the data that .*run\.ckpt was trained on"):
        vaelib.fit(*_fresh(), other, epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"run\.ckpt holds the model state of class VAE, "
                                              r"but the model given is of class Autoencoder"):
        vaelib.fit(vaelib.Autoencoder(3), vaelib.KoLagrangian(), cosine_small, epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"run\.ckpt holds the objective state of class KoLagrangian, "
                                              r"but the objective given is of class ELBO"):
        vaelib.fit(vaelib.VAE(3, hidden=(16,)), vaelib.ELBO(), cosine_small, epochs=2, resume_from=path, **SETTINGS)
    bare = save_checkpoint(tmp_path / "bare.ckpt", vaelib.VAE(3, hidden=(16,)), objective=vaelib.KoLagrangian())
    with pytest.raises(CheckpointError, match=r"bare\.ckpt' was not saved by fit"):
        vaelib.fit(*_fresh(), cosine_small, epochs=2, resume_from=bare, **SETTINGS)
    with pytest.raises(FileNotFoundError, match=r"resume_from='.*nothing\.ckpt': no checkpoint file there"):
        vaelib.fit(*_fresh(), cosine_small, epochs=2, resume_from=tmp_path / "nothing.ckpt", **SETTINGS)


# ---------------------------------------------------------------------------------------------- non-finite guard

class _NaNAt(Objective):
    """Ko's objective whose loss turns NaN from a given call on: to exercise the guard."""

    def __init__(self, at_call):
        super().__init__()
        self.inner, self.at_call, self.calls = vaelib.KoLagrangian(), at_call, 0

    def forward(self, x, out):
        self.calls += 1
        terms = self.inner(x, out)
        if self.calls >= self.at_call:
            terms["kl"] = terms["kl"] * float("nan")
        return terms


def test_a_nan_stops_training_with_epoch_step_and_term_and_keeps_the_last_good_epoch(cosine_small, tmp_path):
    steps_per_epoch = len(cosine_small) // SETTINGS["batch_size"]
    path = tmp_path / "run.ckpt"
    vaelib.seed_everything(0)
    model = vaelib.VAE(3, hidden=(16,))
    objective = _NaNAt(at_call=2 * steps_per_epoch + 3)
    with pytest.raises(vaelib.TrainingDiverged, match=(
            r"training stopped at epoch 3, step 3: the term 'kl' is not finite\. The model, objective and optimiser "
            r"were restored to the end of epoch 2 .* history holds 2 completed epochs; that state was saved to "
            r".*run\.ckpt")) as info:
        vaelib.fit(model, objective, cosine_small, epochs=EPOCHS, checkpoint=path, checkpoint_every=10, **SETTINGS)
    error = info.value
    assert (error.epoch, error.step, error.term) == (3, 3, "the term 'kl'") and len(error.history) == 2
    # The state kept is exactly that of a clean two-epoch run: model, alpha, optimiser and history.
    vaelib.seed_everything(0)
    clean_model, clean_objective = vaelib.VAE(3, hidden=(16,)), vaelib.KoLagrangian()
    clean = vaelib.fit(clean_model, clean_objective, cosine_small, epochs=2, **SETTINGS)
    _assert_same_run((model, objective.inner, error.history), (clean_model, clean_objective, clean))
    # The checkpoint (due only at epoch 10) was written with that state, and a run resumes from it.
    saved = load_checkpoint(path)
    assert saved.history == clean.terms
    resumed_model, _ = _fresh(init_seed=3)
    resumed_objective = _NaNAt(at_call=10**9)  # the same objective class, now without the NaN
    resumed = vaelib.fit(resumed_model, resumed_objective, cosine_small, epochs=EPOCHS, resume_from=path, **SETTINGS)
    vaelib.seed_everything(0)
    full_model, full_objective = vaelib.VAE(3, hidden=(16,)), vaelib.KoLagrangian()
    full = vaelib.fit(full_model, full_objective, cosine_small, epochs=EPOCHS, **SETTINGS)
    _assert_same_run((resumed_model, resumed_objective.inner, resumed), (full_model, full_objective, full))


def test_a_nan_in_the_first_epoch_restores_the_initial_state(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.VAE(3, hidden=(16,))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(vaelib.TrainingDiverged, match=r"epoch 1, step 2: .* restored to their state before training"):
        vaelib.fit(model, _NaNAt(at_call=2), cosine_small, epochs=2, **SETTINGS)
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())


def test_a_non_finite_gradient_is_named_by_its_parameter(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3)
    model.decoder[0].bias.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(vaelib.TrainingDiverged,
                       match=r"epoch 1, step 1: the gradient of 'model\.decoder\.0\.bias' is not finite"):
        vaelib.fit(model, vaelib.Reconstruction(), cosine_small, epochs=1, **SETTINGS)
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _Overflow(Objective):
    """A finite loss with a finite but huge gradient: one SGD step overflows the weights to inf."""

    def forward(self, x, out):
        recon = reconstruction_term(x, out).mean()
        return {"loss": recon * 1e30, "recon": recon}


def test_an_update_that_overflows_the_weights_is_never_recorded(cosine_small):
    vaelib.seed_everything(0)
    model = vaelib.Autoencoder(3)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(vaelib.TrainingDiverged, match=r"epoch 1, step 1: the parameter 'model\..*' after the "
                                                      r"update is not finite"):
        vaelib.fit(model, _Overflow(), cosine_small, epochs=3, batch_size=len(cosine_small), lr=1e10,
                   optimizer="sgd", progress=False)
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())
