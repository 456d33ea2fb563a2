"""The comparison experiment (vaelib.experiments.comparison) on a tiny configuration."""
import math

import pytest

from vaelib.experiments import comparison as cmp

TINY = cmp.ComparisonConfig(seeds=(0, 1), epochs=2, n_points=400, n_quality=300,
                            methods=("ELBO", "GECO", "σ-VAE"))


@pytest.fixture(scope="module")
def trained():
    runs = cmp.train(TINY, progress=False)
    return runs, cmp.evaluate(TINY, runs)


def test_every_setting_trains_with_every_seed(trained):
    runs, rows = trained
    labels = [s.label for s in cmp.comparison_settings(TINY)]
    assert labels == ["ELBO", "GECO, κ = 0.03", "GECO, κ = 0.05", "GECO, κ = 0.1", "σ-VAE"]
    assert [(r.setting.label, r.seed) for r in runs] == [(label, seed) for label in labels for seed in (0, 1)]
    assert all(len(r.history) == TINY.epochs for r in runs)
    assert len(rows) == len(runs)
    assert all(set(row) >= {"recon", "recon_at_mean", "kl", "alpha", *cmp.QUALITY} for row in rows)
    # a multiplier only where the objective has one
    assert all(math.isnan(r["alpha"]) == (r["method"] != "GECO") for r in rows)


def test_a_run_is_what_it_would_be_alone(trained):
    runs, rows = trained
    alone = cmp.train(cmp.ComparisonConfig(**{**TINY.__dict__, "seeds": (1,), "methods": ("σ-VAE",)}),
                      progress=False)
    last = [r for r in runs if r.setting.method == "σ-VAE" and r.seed == 1][0]
    assert alone[0].history.terms == last.history.terms


def test_summary_best_settings_and_table(trained):
    _, rows = trained
    table = cmp.summarise(rows)
    assert [e["label"] for e in table] == list(dict.fromkeys(r["label"] for r in rows))
    geco = [e for e in table if e["method"] == "GECO"]
    means = [e["mmd2"][0] for e in geco]
    assert cmp.best_settings(table, "mmd2")["GECO"]["mmd2"][0] == min(means)
    assert cmp.best_settings(table, "cell_coverage")["GECO"]["cell_coverage"][0] == max(
        e["cell_coverage"][0] for e in geco)
    text = cmp.format_table(table, style="text")
    assert text.splitlines()[0].startswith("objective") and len(text.splitlines()) == 1 + len(table)
    markdown = cmp.format_table(table, style="markdown")
    assert markdown.count("\n") == len(table) + 1
    with pytest.raises(ValueError, match="metric must be one of"):
        cmp.best_settings(table, "beauty")


def test_noise_levels_score_fresh_data_like_a_perfect_generator():
    levels = cmp.noise_levels(cmp.ComparisonConfig(n_quality=300), repeats=3)
    assert set(levels) == set(cmp.QUALITY)
    assert abs(levels["mmd2"].mean) < 4 * levels["mmd2"].std + 1e-3
    assert levels["cell_coverage"].mean > 0.5


def test_bad_config():
    with pytest.raises(ValueError, match="seeds is empty"):
        cmp.ComparisonConfig(seeds=())
    with pytest.raises(ValueError, match="methods must be one of"):
        cmp.ComparisonConfig(methods=("WGAN",))


def test_dual_ascent_agrees_with_cooper():
    result = cmp.cooper_cross_check(delta=0.5, n_points=300, epochs=2)
    assert result["alpha_vaelib"] == pytest.approx(result["alpha_cooper"], abs=1e-6)
    assert result["max_parameter_difference"] < 1e-5
    assert result["alpha_vaelib"] != 1.0  # the multiplier did move
