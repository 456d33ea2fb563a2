import pytest
import torch

import vaelib
from vaelib.models import ModelOutput


def _output(kl_per_point: float) -> ModelOutput:
    # mu chosen so that KL = 0.5 * mu^2 per point (logvar = 0).
    mu = torch.full((4, 1), (2 * kl_per_point) ** 0.5)
    return ModelOutput(recon=torch.zeros(4, 3), z=mu, mu=mu, logvar=torch.zeros(4, 1))


def test_value_is_recon_plus_alpha_times_violation():
    x = torch.ones(4, 3)  # R = 3 per point
    terms = vaelib.KLConstrained(delta=0.5, alpha_init=2.0)(x, _output(1.5))
    assert terms["recon"].item() == pytest.approx(3.0)
    assert terms["kl"].item() == pytest.approx(1.5)
    assert terms["loss"].item() == pytest.approx(3.0 + 2.0 * (1.5 - 0.5))


@pytest.mark.parametrize("kl, direction", [(1.5, +1), (0.1, -1)])
def test_ascent_prices_a_violated_constraint_and_releases_a_slack_one(kl, direction):
    objective = vaelib.KLConstrained(delta=0.5, alpha_init=1.0, alpha_rule="ascent")
    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    terms = objective(torch.ones(4, 3), _output(kl))
    terms["loss"].backward()
    objective.before_step(); opt.step(); objective.after_step({k: v.detach() for k, v in terms.items()})
    assert (objective.alpha.item() - 1.0) * direction > 0
    assert objective.alpha.item() == pytest.approx(1.0 + 0.1 * (kl - 0.5))


def test_bad_arguments():
    with pytest.raises(ValueError, match="delta must be a finite number >= 0, got -1"):
        vaelib.KLConstrained(delta=-1)
    with pytest.raises(ValueError, match="alpha_rule must be one of"):
        vaelib.KLConstrained(alpha_rule="dual")


def test_train_variants_mixes_engines_and_summarises_per_variant():
    from vaelib.data import cosine_surface
    from vaelib.experiments.multiplier_rules import final_summary, format_summary, train_variants

    x = cosine_surface(n=256, seed=0)
    variants = {"elbo": vaelib.ELBO, "bound": lambda: vaelib.KLConstrained(0.1, alpha_rule="ascent")}
    runs = train_variants(variants, x, seeds=[0, 1], epochs=2, batch_size=64, progress=False)
    assert [(r.variant, r.seed) for r in runs] == [("elbo", 0), ("elbo", 1), ("bound", 0), ("bound", 1)]
    assert all(len(r.history) == 2 for r in runs)
    summary = final_summary(runs)
    assert "alpha" not in summary["elbo"] and summary["bound"]["alpha"][0] > 0
    elbo_recon = [r.history.final()["recon"] for r in runs if r.variant == "elbo"]
    assert summary["elbo"]["recon"][0] == pytest.approx(sum(elbo_recon) / 2)
    table = format_summary(summary)
    assert table.splitlines()[1].startswith("elbo") and table.splitlines()[1].endswith("–")  # no alpha
    assert format_summary(summary, style="markdown").splitlines()[1] == "|---|---|---|---|"
    with pytest.raises(ValueError, match="seeds is empty"):
        train_variants(variants, x, seeds=[], epochs=1)
