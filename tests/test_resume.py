"""Checkpoints and resume: resuming equals not stopping (fit, fit_batched, the reproduce command), a changed
setup is refused with the change named, and a diverging run keeps its last good state."""
import re

import pytest
import torch

import vaelib
import vaelib.engine
from vaelib.__main__ import main
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
    ({"batch_size": 64}, (r"run\.ckpt' was saved by another setup: batch_size was 128, now 64\. Resume with the "
                          r"setup it was saved with, or train anew without resume_from")),
    ({"seed": 8}, r"was saved by another setup: seed was 7, now 8\."),
    ({"optimizer": "sgd"}, r"was saved by another setup: optimizer was 'adam', now 'sgd'\."),
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
    with pytest.raises(CheckpointError, match=r"run\.ckpt' was saved by another setup: x is other data \(its sha256 "
                                              r"differs\)\."):
        vaelib.fit(*_fresh(), other, epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"x had 512 rows, now 511"):
        vaelib.fit(*_fresh(), cosine_small[:-1], epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"run\.ckpt' was saved by another setup: the model's class was VAE, "
                                              r"now Autoencoder\."):
        vaelib.fit(vaelib.Autoencoder(3), vaelib.KoLagrangian(), cosine_small, epochs=2, resume_from=path, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"run\.ckpt' was saved by another setup: the objective's class was "
                                              r"KoLagrangian, now ELBO\."):
        vaelib.fit(vaelib.VAE(3, hidden=(16,)), vaelib.ELBO(), cosine_small, epochs=2, resume_from=path, **SETTINGS)
    bare = save_checkpoint(tmp_path / "bare.ckpt", vaelib.VAE(3, hidden=(16,)), objective=vaelib.KoLagrangian())
    with pytest.raises(CheckpointError, match=r"bare\.ckpt' was not saved by fit"):
        vaelib.fit(*_fresh(), cosine_small, epochs=2, resume_from=bare, **SETTINGS)
    with pytest.raises(FileNotFoundError, match=r"resume_from='.*nothing\.ckpt': no checkpoint file there"):
        vaelib.fit(*_fresh(), cosine_small, epochs=2, resume_from=tmp_path / "nothing.ckpt", **SETTINGS)


# ---------------------------------------------------------------------------------------------- non-finite guard

class _NaNAt(Objective):
    """Ko's objective whose loss turns NaN from a given call on (while the class's ``enabled``): to
    exercise the guard."""

    enabled = True

    def __init__(self, at_call):
        super().__init__()
        self.inner, self.at_call, self._calls = vaelib.KoLagrangian(), at_call, 0

    def forward(self, x, out):
        self._calls += 1
        terms = self.inner(x, out)
        if self.enabled and self._calls >= self.at_call:
            terms["kl"] = terms["kl"] * float("nan")
        return terms


def test_a_nan_stops_training_with_epoch_step_and_term_and_keeps_the_last_good_epoch(cosine_small, tmp_path,
                                                                                       monkeypatch):
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
    monkeypatch.setattr(_NaNAt, "enabled", False)  # the same objective and settings, now without the NaN
    resumed_objective = _NaNAt(at_call=2 * steps_per_epoch + 3)
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


# ---------------------------------------------------------------------------------------------- a changed setup

def _unit_data(n=512):
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(0))


def _frozen_alpha():
    objective = vaelib.KoLagrangian()
    objective.alpha.requires_grad_(False)
    return objective


def _elu_alpha(alpha):
    vaelib.seed_everything(0)
    model = vaelib.VAE(3, hidden=(16,), activation="elu")
    for module in model.modules():
        if isinstance(module, torch.nn.ELU):
            module.alpha = alpha
    return model


def _vae(**kwargs):
    vaelib.seed_everything(0)
    return vaelib.VAE(3, **{"hidden": (16,), **kwargs})


CHANGES = [  # (saved as, resumed as, data, what the error names): each changes how the run trains
    ("beta", lambda: (_vae(), vaelib.ELBO()), lambda: (_vae(), vaelib.ELBO(beta=4.0)), None,
     "the objective's beta was 1.0, now 4.0"),
    ("delta", lambda: (_vae(), vaelib.KoLagrangian()), lambda: (_vae(), vaelib.KoLagrangian(delta=0.2)), None,
     "the objective's delta was 0.1, now 0.2"),
    ("kl_reduction", lambda: (_vae(), vaelib.KoLagrangian()), lambda: (_vae(), vaelib.KoLagrangian(kl_reduction="sum")),
     None, "the objective's kl_reduction was 'mean', now 'sum'"),
    ("alpha_rule", lambda: (_vae(), vaelib.KoLagrangian()), lambda: (_vae(), vaelib.KoLagrangian(alpha_rule="project")),
     None, "the objective's alpha_rule was 'reverse', now 'project'"),
    ("frozen alpha", lambda: (_vae(), vaelib.KoLagrangian()), lambda: (_vae(), _frozen_alpha()), None,
     "the objective's trained parameters were ['alpha'], now []"),
    ("activation", lambda: (_vae(activation="tanh"), vaelib.ELBO()), lambda: (_vae(activation="relu"), vaelib.ELBO()),
     None, "the model's activation was 'tanh', now 'relu'"),
    ("decoder", lambda: (_vae(), vaelib.ELBO()), lambda: (_vae(decoder="bernoulli"), vaelib.ELBO()), _unit_data,
     "the model's decoder was 'gaussian', now 'bernoulli'"),
    ("hidden", lambda: (_vae(), vaelib.ELBO()), lambda: (_vae(hidden=(32,)), vaelib.ELBO()), None,
     "the model's hidden was [16], now [32]"),
    ("ELU alpha set after construction", lambda: (_elu_alpha(1.0), vaelib.ELBO()),
     lambda: (_elu_alpha(0.5), vaelib.ELBO()), None, "the model's modules differ"),
]


@pytest.mark.parametrize("saved_as, resumed_as, data, message", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_resume_refuses_a_changed_model_or_objective_and_names_the_change(cosine_small, tmp_path, saved_as,
                                                                          resumed_as, data, message):
    x = cosine_small if data is None else data()
    path = tmp_path / "run.ckpt"
    vaelib.fit(*saved_as(), x, epochs=1, checkpoint=path, **SETTINGS)
    model, objective = resumed_as()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        vaelib.fit(model, objective, x, epochs=2, checkpoint=path, resume_from=path, **SETTINGS)
    assert f"run.ckpt' was saved by another setup: {message}" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded
    assert len(load_checkpoint(path).history["loss"]) == 1


def test_a_checkpoint_is_not_overwritten_unless_asked(cosine_small, tmp_path):
    path, other = tmp_path / "run.ckpt", tmp_path / "other.ckpt"
    vaelib.fit(*_fresh(), cosine_small, epochs=2, checkpoint=path, **SETTINGS)
    vaelib.fit(*_fresh(), cosine_small, epochs=1, checkpoint=other, **SETTINGS)
    saved = path.read_bytes()
    epochs_run = []
    with pytest.raises(FileExistsError, match=r"checkpoint='.*run\.ckpt' already exists; pass overwrite=True to "
                                              r"replace it, or resume_from='.*run\.ckpt' to continue the run it holds"):
        vaelib.fit(*_fresh(), cosine_small, epochs=1, checkpoint=path, on_epoch_end=lambda e, m: epochs_run.append(e),
                   **SETTINGS)
    with pytest.raises(FileExistsError, match="already exists"):  # continuing another run into this file
        vaelib.fit(*_fresh(), cosine_small, epochs=2, checkpoint=path, resume_from=other, **SETTINGS)
    assert epochs_run == [] and path.read_bytes() == saved
    vaelib.fit(*_fresh(), cosine_small, epochs=3, checkpoint=path, resume_from=path, **SETTINGS)  # in place
    assert len(load_checkpoint(path).history["loss"]) == 3
    vaelib.fit(*_fresh(), cosine_small, epochs=1, checkpoint=path, overwrite=True, **SETTINGS)
    assert len(load_checkpoint(path).history["loss"]) == 1


def test_a_bad_random_state_is_found_before_anything_is_restored(cosine_small, tmp_path):
    """A file with a valid digest (as a forger or a bug could write it) whose generator state is wrong."""
    path, forged = tmp_path / "run.ckpt", tmp_path / "forged.ckpt"
    model, objective = _fresh()
    vaelib.fit(model, objective, cosine_small, epochs=1, checkpoint=path, **SETTINGS)
    ckpt = load_checkpoint(path)
    save_checkpoint(forged, model, objective=objective, history=ckpt.history, fit_settings=ckpt.fit_settings,
                    fingerprint=ckpt.fingerprint, optimizer=torch.optim.Adam([*model.parameters(), objective.alpha]),
                    rng_state={"torch": ckpt.rng_state["torch"][:100], "order": ckpt.rng_state["order"]})
    model, objective = _fresh(init_seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"forged\.ckpt holds a random state 'torch' that a generator on cpu "
                                              r"does not accept \(.*\); the file is damaged"):
        vaelib.fit(model, objective, cosine_small, epochs=2, resume_from=forged, **SETTINGS)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------- fit_batched

BATCHED = {"batch_size": 64, "lr": 3e-3, "progress": False}
RUNS = [(vaelib.ELBO, 0), (lambda: vaelib.KoLagrangian(kl_reduction="sum"), 1), (lambda: vaelib.GECO(kappa=0.3), 2),
        (lambda: vaelib.KoLagrangian(alpha_rule="fixed", alpha_init=0.3), 3)]
BACKENDS = [pytest.param("kernel", marks=pytest.mark.skipif(not vaelib.engine.kernel_available(),
                                                             reason="no C compiler for the kernel")), "torch"]


def _runs(runs=RUNS, init_seed=None):
    built = []
    for make, seed in runs:
        vaelib.seed_everything(seed if init_seed is None else init_seed)
        built.append((vaelib.VAE(3, hidden=(8,)), make()))
    return [m for m, _ in built], [o for _, o in built], [seed for _, seed in runs]


def _interrupt_after(monkeypatch, epochs):
    """Make both engine paths raise KeyboardInterrupt in their epoch number ``epochs + 1``."""
    from vaelib.engine import KernelTrainer
    from vaelib.engine._generic import GenericTrainer

    calls = []
    for cls in (KernelTrainer, GenericTrainer):
        real = cls.epoch

        def epoch(self, *args, real=real):
            calls.append(1)
            if len(calls) > epochs:
                raise KeyboardInterrupt
            return real(self, *args)

        monkeypatch.setattr(cls, "epoch", epoch)


def _assert_same_runs(a, b):
    (models_a, objectives_a, histories_a), (models_b, objectives_b, histories_b) = a, b
    assert [h.terms for h in histories_a] == [h.terms for h in histories_b]
    for x, y in zip([*models_a, *objectives_a], [*models_b, *objectives_b]):
        assert x.state_dict().keys() == y.state_dict().keys()
        assert all(torch.equal(x.state_dict()[k], y.state_dict()[k]) for k in x.state_dict())


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_batched_interrupted_and_resumed_equals_the_uninterrupted_run_bit_for_bit(cosine_small, tmp_path,
                                                                                     monkeypatch, backend):
    models, objectives, seeds = _runs()
    histories = vaelib.fit_batched(models, objectives, cosine_small, seeds=seeds, epochs=5, backend=backend, **BATCHED)
    expected = (models, objectives, histories)
    path = tmp_path / "runs.state"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 4)
        with pytest.raises(KeyboardInterrupt):
            vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=seeds, epochs=5, backend=backend, checkpoint=path,
                               checkpoint_every=3, **BATCHED)
    assert [len(terms["loss"]) for terms in vaelib.checkpoint.load_state(path, content="fit_batched")["histories"]] \
        == [3] * len(RUNS)  # saved at epoch 3; epoch 4 was lost with the interruption
    models, objectives, _ = _runs(init_seed=99)  # a new process: other initial weights
    histories = vaelib.fit_batched(models, objectives, cosine_small, seeds=seeds, epochs=5, checkpoint=path,
                                   resume_from=path, **BATCHED)  # backend "auto" keeps the saved path
    _assert_same_runs((models, objectives, histories), expected)
    models, objectives, _ = _runs(init_seed=7)
    again = vaelib.fit_batched(models, objectives, cosine_small, seeds=seeds, epochs=5, resume_from=path, **BATCHED)
    _assert_same_runs((models, objectives, again), expected)  # a finished state: nothing more to train


@pytest.mark.parametrize("change, message", [
    (lambda m, o, s: (m, o[:1] + [vaelib.KoLagrangian(delta=0.2, kl_reduction="sum")] + o[2:], s),
     "run 1: the objective's delta was 0.1, now 0.2"),
    (lambda m, o, s: (m, o, [5, *s[1:]]), "run 0: seed was 0, now 5"),
    (lambda m, o, s: (m[:2], o[:2], s[:2]), "it holds 4 runs, now 2 are given"),
])
def test_fit_batched_refuses_to_resume_a_changed_setup(cosine_small, tmp_path, change, message):
    path = tmp_path / "runs.state"
    vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=1, checkpoint=path, backend="torch",
                       **BATCHED)
    models, objectives, seeds = change(*_runs())
    with pytest.raises(CheckpointError, match=re.escape(f"runs.state' was saved by another setup: {message}")):
        vaelib.fit_batched(models, objectives, cosine_small, seeds=seeds, epochs=2, resume_from=path, **BATCHED)
    with pytest.raises(CheckpointError, match=re.escape("was saved by another setup: lr was 0.003, now 0.001")):
        vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=2, resume_from=path,
                           **{**BATCHED, "lr": 1e-3})


@pytest.mark.skipif(not vaelib.engine.kernel_available(), reason="no C compiler for the kernel")
def test_fit_batched_keeps_the_path_a_state_was_trained_on(cosine_small, tmp_path):
    path = tmp_path / "runs.state"
    vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=1, checkpoint=path, backend="kernel",
                       **BATCHED)
    with pytest.raises(CheckpointError, match=r"was trained on the 'kernel' path and would now continue on the "
                                              r"'torch' path, which rounds differently; resume with backend='kernel'"):
        vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=2, resume_from=path, backend="torch",
                           **BATCHED)


def test_a_state_file_and_a_checkpoint_are_never_taken_for_each_other(cosine_small, tmp_path):
    state, ckpt = tmp_path / "runs.state", tmp_path / "run.ckpt"
    vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=1, checkpoint=state, **BATCHED)
    vaelib.fit(*_fresh(), cosine_small, epochs=1, checkpoint=ckpt, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"runs\.state is a training state \(saved by fit_batched; pass it to "
                                              r"fit_batched\(resume_from=\.\.\.\)\), not a checkpoint of one model"):
        vaelib.fit(*_fresh(), cosine_small, epochs=2, resume_from=state, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"run\.ckpt is a checkpoint of one model .*, not a training state"):
        vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=2, resume_from=ckpt, **BATCHED)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        vaelib.fit_batched(*_runs()[:2], cosine_small, seeds=_runs()[2], epochs=1, checkpoint=state, **BATCHED)


def test_a_diverging_batch_saves_its_last_good_state(cosine_small, tmp_path):
    path = tmp_path / "runs.state"
    with pytest.raises(vaelib.engine.RunDiverged, match=r"each history holds 0 completed epochs; that state was "
                                                        r"saved to .*runs\.state"):
        vaelib.fit_batched(*_runs()[:2], cosine_small * 1e30, seeds=_runs()[2], epochs=3, checkpoint=path,
                           checkpoint_every=10, **BATCHED)
    saved = vaelib.checkpoint.load_state(path, content="fit_batched")
    assert all(terms == {} for terms in saved["histories"])


# ---------------------------------------------------------------------------------------------- reproduce --resume

@pytest.mark.parametrize("engine, epochs, epochs_before_interrupt", [("batched", 25, 23), ("loop", 12, 2 * 12 + 11)])
def test_an_interrupted_reproduction_resumes_to_the_same_table_bit_for_bit(tmp_path, monkeypatch, capsys, engine,
                                                                           epochs, epochs_before_interrupt):
    reference, out = tmp_path / "reference", tmp_path / "out"
    argv = ["reproduce", "--runs", "2", "--epochs", str(epochs), "--n-points", "200", "--no-progress",
            "--engine", engine]
    assert main([*argv, "--out", str(reference)]) == 0
    state = out / "reproduce-state"
    with monkeypatch.context() as patch:
        if engine == "batched":
            _interrupt_after(patch, epochs_before_interrupt)
        else:  # the loop engine: the third run is interrupted in its epoch 12, after saving epoch 10
            real, calls = vaelib.train._run_epoch, []
            patch.setattr(vaelib.train, "_run_epoch", lambda *args: calls.append(1) or (
                _raise(KeyboardInterrupt()) if len(calls) > epochs_before_interrupt else real(*args)))
        capsys.readouterr()
        assert main([*argv, "--out", str(out)]) == 130
    assert capsys.readouterr().err == (f"vaelib reproduce: error: interrupted; its training state is saved in {state}: "
                                       "run the same command with --resume to continue\n")
    assert not (out / "table1.json").exists() and (state / "config.json").exists()
    assert main([*argv, "--out", str(out)]) == 2  # without --resume the saved state is not overwritten
    assert "holds the saved state of an unfinished reproduction; resume it" in capsys.readouterr().err
    assert main([*argv, "--epochs", "30", "--out", str(out), "--resume"]) == 2  # the last --epochs counts
    assert f"holds a reproduction with other settings: epochs was {epochs}, now 30" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert (out / "table1.json").read_bytes() == (reference / "table1.json").read_bytes()
    assert (out / "figure1.png").read_bytes() == (reference / "figure1.png").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["figure1.png", "table1.json"]  # the state is removed


def _raise(exc):
    raise exc
