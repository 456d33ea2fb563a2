"""Ko & Ko's objective (eq. 7): its value and the rules that update alpha."""
import pytest
import torch

import vaelib
from vaelib.models import ModelOutput
from vaelib.objectives import KoLagrangian


def _output(n=4):
    """A fixed model output: recon error 3 per point, KL 1 per point (mu = 1, logvar = 0 in 2-D)."""
    x = torch.ones(n, 3)
    return x, ModelOutput(recon=torch.zeros(n, 3), z=torch.zeros(n, 2), mu=torch.ones(n, 2),
                          logvar=torch.zeros(n, 2))


def _one_step(objective, lr):
    """One SGD step on alpha alone, with the hooks in the order vaelib.fit calls them."""
    x, out = _output()
    opt = torch.optim.SGD([objective.alpha], lr=lr)
    terms = objective(x, out)
    opt.zero_grad()
    terms["loss"].backward()
    objective.before_step()
    opt.step()
    objective.after_step({name: value.detach() for name, value in terms.items()})
    return terms


def test_value_matches_hand_computation():
    x, out = _output()
    terms = KoLagrangian(delta=0.1, alpha_init=0.5)(x, out)
    # R = 3, KL = 1: loss = (1 + 0.5)·3 + 0.5·(1 - 0.1) = 4.95.
    assert terms["loss"].item() == pytest.approx(4.95)
    assert terms["recon"].item() == pytest.approx(3.0)
    assert terms["kl"].item() == pytest.approx(1.0)
    assert terms["weighted_recon"].item() == pytest.approx(4.5)
    assert terms["weighted_kl"].item() == pytest.approx(0.5)
    assert terms["alpha"].item() == pytest.approx(0.5)


def test_sum_reduction_weighs_the_kl_by_the_batch_size():
    x, out = _output(n=4)
    terms = KoLagrangian(delta=0.1, alpha_init=0.5, kl_reduction="sum")(x, out)
    # KL summed over 4 points = 4: loss = 1.5·3 + 0.5·(4 - 0.1) = 6.45; R stays a per-point mean.
    assert terms["kl"].item() == pytest.approx(4.0)
    assert terms["recon"].item() == pytest.approx(3.0)
    assert terms["loss"].item() == pytest.approx(6.45)


def test_alpha_gradient_is_r_plus_kl_minus_delta():
    x, out = _output()
    objective = KoLagrangian(delta=0.1, alpha_init=0.5)
    objective(x, out)["loss"].backward()
    assert objective.alpha.grad.item() == pytest.approx(3.0 + 1.0 - 0.1)


def test_reverse_reflects_a_step_that_would_make_alpha_negative():
    objective = KoLagrangian(delta=0.1, alpha_init=0.05, alpha_rule="reverse")
    _one_step(objective, lr=0.1)
    # The step is -0.1·3.9 = -0.39, to -0.34; reversed, alpha = 0.05 + 0.39 = 0.44.
    assert objective.alpha.item() == pytest.approx(0.44)


def test_reverse_leaves_a_step_that_keeps_alpha_non_negative():
    objective = KoLagrangian(delta=0.1, alpha_init=1.0, alpha_rule="reverse")
    _one_step(objective, lr=0.1)
    assert objective.alpha.item() == pytest.approx(1.0 - 0.39)


def test_project_clips_alpha_at_zero():
    objective = KoLagrangian(delta=0.1, alpha_init=0.05, alpha_rule="project")
    _one_step(objective, lr=0.1)
    assert objective.alpha.item() == 0.0


def test_ascent_raises_alpha_when_the_constraint_is_violated():
    # R + KL = 4 > delta: the constraint of eq. 4 is violated, so the multiplier must grow.
    objective = KoLagrangian(delta=0.1, alpha_init=0.5, alpha_rule="ascent")
    _one_step(objective, lr=0.1)
    assert objective.alpha.item() == pytest.approx(0.5 + 0.39)


def test_ascent_lowers_alpha_when_the_constraint_holds_and_keeps_it_non_negative():
    objective = KoLagrangian(delta=10.0, alpha_init=0.5, alpha_rule="ascent")
    _one_step(objective, lr=0.1)
    # gradient 4 - 10 = -6; ascent steps to 0.5 - 0.6 < 0, projected to 0.
    assert objective.alpha.item() == 0.0


@pytest.mark.parametrize("rule", ["reverse", "project", "ascent"])
def test_alpha_stays_non_negative_through_training(cosine_small, rule):
    vaelib.seed_everything(0)
    objective = KoLagrangian(alpha_rule=rule)
    alphas = []
    vaelib.fit(vaelib.VAE(3), objective, cosine_small, epochs=3, batch_size=64, lr=0.05, progress=False,
               on_epoch_end=lambda epoch, means: alphas.append(objective.alpha.item()))
    assert min(alphas) >= 0.0
    if rule != "ascent":
        assert alphas[-1] < 1.0  # descent on alpha: R + KL > delta pushes it down


def test_fixed_keeps_alpha_constant(cosine_small):
    vaelib.seed_everything(0)
    objective = KoLagrangian(alpha_init=0.3, alpha_rule="fixed")
    history = vaelib.fit(vaelib.VAE(3), objective, cosine_small, epochs=2, batch_size=64, progress=False)
    assert objective.alpha.item() == pytest.approx(0.3)
    assert history["alpha"] == pytest.approx([0.3, 0.3])
    assert not objective.alpha.requires_grad


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha_rule": "flip"},
     r"alpha_rule must be one of \['ascent', 'fixed', 'geco', 'project', 'reverse'\], got 'flip'"),
    ({"kl_reduction": "max"}, r"kl_reduction must be one of \['mean', 'sum'\], got 'max'"),
    ({"delta": -0.1}, "delta must be a finite number >= 0, got -0.1"),
    ({"alpha_init": -1.0}, "alpha_init must be a finite number >= 0, got -1.0"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KoLagrangian(**kwargs)
