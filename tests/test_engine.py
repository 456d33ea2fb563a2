"""The batched engine (vaelib.engine): the same numbers as vaelib.fit, runs independent of each other.

Tolerance. The engine reproduces fit's random streams (initial weights, data order, noise) exactly,
so the only differences are floating-point rounding: matrix products and gradient sums add in
another order, and the C kernel evaluates exp and tanh with its own polynomials (within 1 and 3
units in the last place). After the 24 Adam steps used here the largest differences seen are
about 3e-7 relative; the tests allow rtol = 1e-5 (about 80 float32 ulps). A wrong data order, a
wrong noise draw or a wrong gradient changes the numbers at the 1e-2 level or more.
"""
import pytest
import torch

import vaelib
from vaelib.data import cosine_surface
from vaelib.engine import RunDiverged, _kernel, fit_batched, kernel_available

RTOL, ATOL = 1e-5, 1e-6
SETTINGS = {"epochs": 3, "batch_size": 64, "lr": 3e-3}  # 512 points: 8 steps per epoch, 24 in all
MIXED_RUNS = [  # (objective, seed): every objective and alpha rule, mixed in one computation
    (lambda: vaelib.ELBO(), 0),
    (lambda: vaelib.ELBO(beta=64.0), 1),
    (lambda: vaelib.KoLagrangian(alpha_rule="reverse", kl_reduction="sum"), 2),
    (lambda: vaelib.KoLagrangian(alpha_rule="project"), 3),
    (lambda: vaelib.KoLagrangian(alpha_rule="ascent"), 4),
    (lambda: vaelib.KoLagrangian(alpha_rule="fixed", alpha_init=0.3), 5),
    (lambda: vaelib.KLConstrained(delta=0.5, alpha_rule="ascent"), 6),
    (lambda: vaelib.GECO(kappa=0.3, rate=0.1), 7),
    (lambda: vaelib.SigmaVAE(), 8),
    (lambda: vaelib.ELBO(kl_reduction="sum"), 9),
    (lambda: vaelib.KoLagrangian(alpha_rule="geco", kl_reduction="sum"), 10),
]
needs_kernel = pytest.mark.skipif(not kernel_available(), reason="no C compiler to build the engine's kernel")
ENGINE_BACKENDS = [pytest.param("kernel", marks=needs_kernel), "torch"]


@pytest.fixture
def data():
    return cosine_surface(n=512, seed=1)


def _build(make_objective, seed, **vae):
    vaelib.seed_everything(seed)
    return vaelib.VAE(vae.pop("in_dim", 3), **vae), make_objective()


def _train_loop(runs, x, **settings):
    out = []
    for make_objective, seed in runs:
        model, objective = _build(make_objective, seed)
        history = vaelib.fit(model, objective, x, seed=seed, progress=False, **settings)
        out.append((model, objective, history))
    return out


def _train_batched(runs, x, **settings):
    built = [_build(make_objective, seed) for make_objective, seed in runs]
    histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=[s for _, s in runs],
                            progress=False, **settings)
    return [(m, o, h) for (m, o), h in zip(built, histories)]


def _assert_same_run(expected, actual, rtol=RTOL, atol=ATOL):
    (model, objective, history), (model_b, objective_b, history_b) = expected, actual
    assert set(history.terms) == set(history_b.terms)
    for name in history.terms:
        torch.testing.assert_close(torch.tensor(history_b[name]), torch.tensor(history[name]), rtol=rtol, atol=atol,
                                   msg=lambda m: f"history term {name!r}: {m}")
    for (name, p), p_b in zip(model.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(p_b, p, rtol=rtol, atol=atol, msg=lambda m: f"parameter {name}: {m}")
    for (name, value), value_b in zip(objective.state_dict().items(), objective_b.state_dict().values()):
        torch.testing.assert_close(value_b, value, rtol=rtol, atol=atol, msg=lambda m: f"objective {name}: {m}")


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_batched_runs_match_the_loop_engine(data, backend):
    loop = _train_loop(MIXED_RUNS, data, **SETTINGS)
    batched = _train_batched(MIXED_RUNS, data, backend=backend, device="cpu", **SETTINGS)
    for expected, actual in zip(loop, batched):
        _assert_same_run(expected, actual)
    model = batched[0][0]  # an ordinary module again: trainable, and usable by the rest of vaelib
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    assert model.sample(5).shape == (5, 3)


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_a_run_is_the_same_alone_or_batched_with_others(data, backend):
    together = _train_batched(MIXED_RUNS[:3], data, backend=backend, **SETTINGS)
    alone = _train_batched(MIXED_RUNS[2:3], data, backend=backend, **SETTINGS)
    if backend == "kernel":
        # The kernel computes each run by the same code whatever the other runs: bit for bit.
        _assert_same_run(together[2], alone[0], rtol=0, atol=0)
    else:
        # Batched matrix products may be blocked differently for another number of runs.
        _assert_same_run(together[2], alone[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("rule", ["reverse", "project", "ascent", "fixed"])
def test_alpha_rules_act_as_in_the_loop_engine(data, backend, rule):
    # alpha starts small and Adam's first step is lr = 0.01 long: descending, it would go negative at
    # once (its gradient R + KL - delta is positive here), so every rule's constraint acts
    start = 2.0 ** -9
    runs = [(lambda: vaelib.KoLagrangian(alpha_init=start, alpha_rule=rule), 7)]
    settings = {"epochs": 1, "batch_size": 128, "lr": 0.01}
    (expected,) = _train_loop(runs, data, **settings)
    (actual,) = _train_batched(runs, data, backend=backend, **settings)
    _assert_same_run(expected, actual)
    alpha = actual[1].alpha.item()
    assert {"reverse": alpha > 0, "project": alpha == 0, "ascent": alpha > start, "fixed": alpha == start}[rule]


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "elu", "identity"])
def test_other_activations_and_sgd_match_the_loop_engine(data, backend, activation):
    runs = [(lambda: vaelib.ELBO(), 0), (lambda: vaelib.KoLagrangian(), 1)]
    settings = {"epochs": 1, "batch_size": 100, "lr": 0.01, "optimizer": "sgd"}  # 512 = 5 x 100 + 12
    loop, batched = [], []
    for make_objective, seed in runs:
        model, objective = _build(make_objective, seed, hidden=(16, 8), activation=activation)
        loop.append((model, objective, vaelib.fit(model, objective, data, seed=seed, progress=False, **settings)))
        batched.append(_build(make_objective, seed, hidden=(16, 8), activation=activation))
    histories = fit_batched([m for m, _ in batched], [o for _, o in batched], data, seeds=[0, 1], progress=False,
                            backend=backend, **settings)
    for expected, (model, objective), history in zip(loop, batched, histories):
        _assert_same_run(expected, (model, objective, history))


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("n, batch_size", [(515, 64), (40, 100)])
def test_a_short_last_minibatch_or_a_single_one_matches_the_loop_engine(backend, n, batch_size):
    # 515 = 8 x 64 + 3: the last minibatch's noise is 6 numbers, which PyTorch draws another way
    x = cosine_surface(n=n, seed=2)
    settings = {"epochs": 2, "batch_size": batch_size, "lr": 3e-3}
    loop = _train_loop(MIXED_RUNS[2:4], x, **settings)
    batched = _train_batched(MIXED_RUNS[2:4], x, backend=backend, **settings)
    for expected, actual in zip(loop, batched):
        _assert_same_run(expected, actual)


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("activation", ["elu", "ptanh"])
def test_a_bernoulli_decoder_matches_the_loop_engine(backend, activation):
    # pixels in [0, 1], some exactly 0 or 1; logits of both signs and far from 0 as training goes
    x = torch.rand(256, 16, generator=torch.Generator().manual_seed(0))
    x[x < 0.1], x[x > 0.9] = 0.0, 1.0
    runs = [(lambda: vaelib.ELBO(), 3), (lambda: vaelib.KoLagrangian(delta=9.0, alpha_rule="reverse"), 4),
            (lambda: vaelib.GECO(kappa=9.0, rate=0.01), 5)]
    vae = {"in_dim": 16, "decoder": "bernoulli", "activation": activation}
    settings = {"epochs": 3, "batch_size": 64, "lr": 1e-2}
    loop, built = [], []
    for make_objective, seed in runs:
        model, objective = _build(make_objective, seed, **vae)
        loop.append((model, objective, vaelib.fit(model, objective, x, seed=seed, progress=False, **settings)))
        built.append(_build(make_objective, seed, **vae))
    histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=[s for _, s in runs],
                            progress=False, backend=backend, **settings)
    assert histories.backend == backend
    for expected, (model, objective), history in zip(loop, built, histories):
        _assert_same_run(expected, (model, objective, history))


def test_the_kernel_leaves_a_gaussian_likelihood_on_a_bernoulli_decoder_to_the_objectives_own_error():
    x = torch.rand(64, 16, generator=torch.Generator().manual_seed(0))
    model, objective = _build(lambda: vaelib.SigmaVAE(), 0, in_dim=16, decoder="bernoulli")
    net = _kernel.kernel_net([model], [objective], "adam", torch.device("cpu"))
    assert "scores a Gaussian likelihood, these models have a Bernoulli decoder" in net.reason
    with pytest.raises(ValueError, match="the calibrated \\(sigma-VAE\\) likelihood is Gaussian"):
        fit_batched([model], [objective], x, seeds=[0], progress=False, epochs=1)


def test_without_a_compiler_auto_falls_back_to_torch(data, monkeypatch):
    monkeypatch.setattr(_kernel, "load", lambda: None)
    (expected,) = _train_batched(MIXED_RUNS[:1], data, backend="torch", **SETTINGS)
    (actual,) = _train_batched(MIXED_RUNS[:1], data, backend="auto", **SETTINGS)
    _assert_same_run(expected, actual, rtol=0, atol=0)
    with pytest.raises(ValueError, match="it could not be built or loaded"):
        _train_batched(MIXED_RUNS[:1], data, backend="kernel", **SETTINGS)


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_a_diverging_run_stops_training_and_restores_the_last_good_state(data, backend):
    built = [_build(make_objective, seed) for make_objective, seed in MIXED_RUNS[:2]]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m, _ in built]
    with pytest.raises(RunDiverged, match=r"run 0 \(seed 0\) stopped at epoch 1, step 1: the term 'loss'") as info:
        fit_batched([m for m, _ in built], [o for _, o in built], data * 1e30, seeds=[0, 1], progress=False,
                    backend=backend, **SETTINGS)
    assert isinstance(info.value, vaelib.TrainingDiverged)
    assert (info.value.run, info.value.epoch, info.value.step) == (0, 1, 1)
    assert [len(h) for h in info.value.histories] == [0, 0]
    for (model, _), state in zip(built, before):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def _call(models=None, objectives=None, x=None, **kwargs):
    model = vaelib.VAE(3)
    kwargs.setdefault("seeds", [0])
    return fit_batched([model] if models is None else models, [vaelib.ELBO()] if objectives is None else objectives,
                       torch.zeros(8, 3) if x is None else x, progress=False, **kwargs)


class _TwoPlayer(vaelib.ELBO):
    batchable = False


@pytest.mark.parametrize("call, error, message", [
    (lambda: _call(models=[], objectives=[], seeds=[]), ValueError, "models is empty"),
    (lambda: _call(seeds=[0, 1]), ValueError, "one entry per run, got 1 models, 1 objectives and 2 seeds"),
    (lambda: _call(models=["VAE"]), TypeError, "models\\[0\\] must be a torch.nn.Module, got str"),
    (lambda: _call(objectives=[torch.nn.MSELoss()]), TypeError, "objectives\\[0\\] must be a vaelib Objective"),
    (lambda: _call(objectives=[_TwoPlayer()]), TypeError, "cannot be trained in a batch"),
    (lambda: _call(models=[vaelib.VAE(3), vaelib.VAE(3, hidden=(16,))], objectives=[vaelib.ELBO(), vaelib.ELBO()],
                   seeds=[0, 1]), ValueError, "models\\[1\\] differs from models\\[0\\]"),
    (lambda: _call(models=[vaelib.VAE(3, activation="elu"), _elu_vae(0.5)], objectives=[vaelib.ELBO(), vaelib.ELBO()],
                   seeds=[0, 1]), ValueError, "models\\[1\\] differs from models\\[0\\]"),
    (lambda: _same_model_twice(), ValueError, "models\\[1\\] is the same object as models\\[0\\]"),
    (lambda: _call(models=[vaelib.VAE(3), vaelib.VAE(3)], objectives=[vaelib.ELBO()] * 2, seeds=[0, 1]), ValueError,
     "objectives\\[1\\] is the same object as objectives\\[0\\]"),
    (lambda: _call(seeds=[-1]), ValueError, "seeds\\[0\\] must be an integer in \\[0, 2\\*\\*63\\), got -1"),
    (lambda: _call(x=torch.zeros(8, 4)), ValueError, "x must have 3 features per row"),
    (lambda: _call(x=torch.zeros(8, 3, dtype=torch.float64)), TypeError, "x has dtype torch.float64"),
    (lambda: _call(x=torch.tensor([[float("nan"), 0.0, 0.0]])), ValueError, "x holds non-finite values"),
    (lambda: _call(epochs=0), ValueError, "epochs must be a positive integer, got 0"),
    (lambda: _call(batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
    (lambda: _call(lr=0.0), ValueError, "lr must be > 0, got 0.0"),
    (lambda: _call(optimizer="lbfgs"), ValueError, "optimizer must be one of \\['adam', 'sgd'\\], got 'lbfgs'"),
    (lambda: _call(backend="gpu"), ValueError, "backend must be one of \\['auto', 'kernel', 'torch'\\], got 'gpu'"),
    (lambda: _call(device="warp-drive"), ValueError, "device must be a torch.device or a name"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _elu_vae(alpha):
    model = vaelib.VAE(3, activation="elu")
    for module in model.modules():
        if isinstance(module, torch.nn.ELU):
            module.alpha = alpha
    return model


def _same_model_twice():
    model = vaelib.VAE(3)
    return _call(models=[model, model], objectives=[vaelib.ELBO(), vaelib.ELBO()], seeds=[0, 1])


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_the_calibrated_likelihood_over_several_kernel_chunks_matches_the_loop_engine(data, backend):
    # 300 points a minibatch: more than the kernel's chunk of 128, so it finds R before any gradient
    runs = [(lambda: vaelib.SigmaVAE(), 3), (lambda: vaelib.GECO(kappa=0.2, rate=0.5), 4)]
    settings = {"epochs": 2, "batch_size": 300, "lr": 3e-3}
    for expected, actual in zip(_train_loop(runs, data, **settings),
                                _train_batched(runs, data, backend=backend, **settings)):
        _assert_same_run(expected, actual)


def test_the_generic_path_trains_any_model_and_objective_as_fit_does(data):
    def build(seed):
        vaelib.seed_everything(seed)
        model = vaelib.Autoencoder(3, latent_dim=2, hidden=(8,))
        model.encoder[0].bias.requires_grad_(False)  # a frozen parameter stays frozen, as in fit
        return model, vaelib.Reconstruction()

    settings = {"epochs": 2, "batch_size": 64, "lr": 3e-3}
    loop = []
    for seed in (0, 1):
        model, objective = build(seed)
        loop.append((model, objective, vaelib.fit(model, objective, data, seed=seed, progress=False, **settings)))
    built = [build(seed) for seed in (0, 1)]
    frozen = built[0][0].encoder[0].bias.detach().clone()
    histories = fit_batched([m for m, _ in built], [o for _, o in built], data, seeds=[0, 1], progress=False,
                            **settings)
    for expected, (model, objective), history in zip(loop, built, histories):
        _assert_same_run(expected, (model, objective, history))
    assert torch.equal(built[0][0].encoder[0].bias, frozen)


class _HalvedELBO(vaelib.ELBO):
    """A user's objective that rewrites combine: the kernel cannot know it, so auto must not use it."""

    def combine(self, recon, kl, **kwargs):
        terms = super().combine(recon, kl, **kwargs)
        return {**terms, "loss": terms["loss"] / 2}


def test_auto_takes_the_generic_path_for_an_objective_the_kernel_does_not_know(data):
    (expected,) = _train_loop([(_HalvedELBO, 0)], data, **SETTINGS)
    (actual,) = _train_batched([(_HalvedELBO, 0)], data, backend="auto", **SETTINGS)
    _assert_same_run(expected, actual)
    with pytest.raises(ValueError, match="_HalvedELBO\\) is not written as a vaelib.objectives.Form"):
        _train_batched([(_HalvedELBO, 0)], data, backend="kernel", **SETTINGS)


@needs_kernel
def test_a_frozen_alpha_is_not_trained_by_the_kernel(data):
    def frozen():
        objective = vaelib.KoLagrangian(alpha_rule="reverse", alpha_init=0.5)
        objective.alpha.requires_grad_(False)
        return objective

    (expected,) = _train_loop([(frozen, 0)], data, **SETTINGS)
    (actual,) = _train_batched([(frozen, 0)], data, backend="kernel", **SETTINGS)
    _assert_same_run(expected, actual)
    assert actual[1].alpha.item() == 0.5


def test_both_trainers_satisfy_the_trainer_protocol():
    from vaelib.engine import GenericTrainer, KernelTrainer, Trainer

    members = [name for name in vars(Trainer) if not name.startswith("_")] + list(Trainer.__annotations__)
    assert {"epoch", "mark", "rollback", "state", "restore", "write_back", "backend"} <= set(members)
    for cls, backend in ((GenericTrainer, "torch"), (KernelTrainer, "kernel")):
        assert all(hasattr(cls, name) for name in members), cls
        assert cls.backend == backend


def test_auto_says_which_backend_trained_and_why_it_fell_back(data, caplog):
    vaelib.seed_everything(3)
    model, objective = vaelib.Autoencoder(3), vaelib.Reconstruction()
    with caplog.at_level("DEBUG", logger="vaelib.engine"):
        histories = fit_batched([model], [objective], data, seeds=[3], progress=False, epochs=1)
    assert histories.backend == "torch" and len(histories) == 1
    assert histories.fallback_reason == "it trains vaelib.VAE models, not Autoencoder"
    assert "on the generic PyTorch path, not the C kernel: it trains vaelib.VAE models, not Autoencoder" in caplog.text
    model, objective = _build(lambda: vaelib.ELBO(), 3)
    chosen = fit_batched([model], [objective], data, seeds=[3], progress=False, epochs=1, backend="torch")
    assert chosen.backend == "torch" and chosen.fallback_reason is None  # asked for, not a fallback
