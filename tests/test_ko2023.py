"""Ko & Ko's experiment: configuration, evaluation, table1.json, Figure 1 and the command line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaelib.__main__ import main
from vaelib.experiments import ko2023
from vaelib.experiments.ko2023 import Ko2023Config, RunSpec

TINY = {"runs": 2, "epochs": 2, "n_points": 200, "n_samples": 300}
STATS = {"mean", "std"}


@pytest.fixture(scope="module")
def tiny_result():
    return ko2023.reproduce(Ko2023Config(**TINY), progress=False)


def test_run_specs_pair_the_objectives_over_the_same_seeds():
    specs = ko2023.run_specs(Ko2023Config(runs=3, seed=7))
    assert specs == [RunSpec("proposed", 7), RunSpec("proposed", 8), RunSpec("proposed", 9),
                     RunSpec("elbo", 7), RunSpec("elbo", 8), RunSpec("elbo", 9)]


def test_initial_run_is_seeded_and_the_init_option_changes_the_weights():
    config = Ko2023Config()
    (m1, o1), (m2, _) = (ko2023.initial_run(config, RunSpec("proposed", 3)) for _ in range(2))
    m3, o3 = ko2023.initial_run(Ko2023Config(init="xavier"), RunSpec("elbo", 3))
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert not torch.equal(m1.encoder[0].weight, m3.encoder[0].weight)
    assert m3.encoder[0].bias.abs().max() == 0
    assert o1.kl_reduction == "sum" and o1.alpha.item() == 1.0
    assert o3.kl_reduction == "sum"  # the ELBO with the KL summed over a minibatch


def test_evaluation_is_deterministic_and_sums_the_kl_over_the_points(tiny_result):
    config, x = tiny_result.config, tiny_result.data
    run = tiny_result.trained[0]
    first, again = ko2023.evaluate_run(config, x, run), ko2023.evaluate_run(config, x, run)
    assert first == again
    per_point = ko2023.evaluate_run(Ko2023Config(**TINY, kl_reduction="mean"), x, run)
    assert first["kl"] == pytest.approx(config.n_points * per_point["kl"], rel=1e-6)
    assert first["weighted_recon"] == pytest.approx((1 + first["alpha"]) * first["recon"])
    assert first["weighted_kl"] == pytest.approx(first["alpha"] * first["kl"])
    assert set(ko2023.evaluate_run(config, x, tiny_result.trained[-1])) == {"recon", "recon_at_mean", "kl"}


def test_table1_json_has_the_agreed_shape(tiny_result):
    table = tiny_result.to_dict()
    assert set(table) == {"config", "paper", "ours", "runs", "figure1_sample_quality"}
    assert table["config"]["runs"] == 2 and table["config"]["epochs"] == 2
    assert set(table["ours"]) == {"proposed", "elbo"}
    assert set(table["ours"]["proposed"]) == {"recon", "recon_at_mean", "kl", "weighted_recon", "weighted_kl", "alpha"}
    assert set(table["ours"]["elbo"]) == {"recon", "recon_at_mean", "kl"}
    assert all(set(cell) == STATS for row in table["ours"].values() for cell in row.values())
    assert table["paper"]["proposed"]["kl"] == {"mean": 56832.0, "std": 2740.0}
    assert [(r["objective"], r["seed"]) for r in table["runs"]] == [("proposed", 0), ("proposed", 1),
                                                                    ("elbo", 0), ("elbo", 1)]
    assert all(set(r) == {"objective", "seed", "recon", "recon_at_mean", "kl", "alpha"} for r in table["runs"])
    recons = [r["recon"] for r in table["runs"] if r["objective"] == "proposed"]
    assert table["ours"]["proposed"]["recon"]["mean"] == pytest.approx(sum(recons) / 2)


def test_mean_std_uses_the_sample_standard_deviation():
    from vaelib.metrics import mean_std

    assert mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2 ** 0.5)}
    assert mean_std([5.0]) == {"mean": 5.0, "std": None}
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_table_text_puts_the_papers_numbers_beside_ours(tiny_result):
    text = tiny_result.table()
    assert "56832 ±\u00a02740" in text and "1.67 ±\u00a00.0005" in text and "0.00018 ±\u00a00.0002" in text
    assert text.count("ours") == 2 and text.count("paper") == 2
    assert tiny_result.table(style="markdown").count("\n| ") == 5  # header and four rows
    page = tiny_result.table(style="html")
    assert page.count("<tr>") == 5 and "56832 ±\u00a02740" in page and page.startswith("<table><caption>Table 1")
    with pytest.raises(ValueError, match="style must be one of"):
        tiny_result.table(style="latex")


def test_same_seed_same_table_other_seed_other_table(tiny_result):
    again = ko2023.reproduce(Ko2023Config(**TINY), progress=False)
    assert again.to_dict() == tiny_result.to_dict()
    assert torch.equal(again.samples["proposed"], tiny_result.samples["proposed"])
    other = ko2023.reproduce(Ko2023Config(**TINY), progress=False, seed=1)
    assert other.to_dict()["ours"] != tiny_result.to_dict()["ours"]


def test_reproduce_rejects_unknown_settings_and_a_misbehaving_engine(monkeypatch):
    with pytest.raises(TypeError, match=r"unknown settings \['epoch'\]"):
        ko2023.reproduce(epoch=3)
    monkeypatch.setitem(ko2023.ENGINES, "reversed", lambda c, x, specs, p: ko2023.train_runs_loop(c, x, specs[::-1], p))
    with pytest.raises(RuntimeError, match="expected one per spec in order"):
        ko2023.reproduce(Ko2023Config(**{**TINY, "engine": "reversed", "runs": 1}), progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"runs": 0}, ValueError, "runs must be a positive integer, got 0"),
    ({"epochs": 2.5}, TypeError, r"epochs must be an int, got float \(2.5\)"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer, got -1"),
    ({"engine": "warp"}, ValueError, r"engine must be one of \[.*'loop'.*\], got 'warp'"),
    ({"lr": 0.0}, ValueError, "lr must be > 0, got 0.0"),
    ({"init": "zeros"}, ValueError, r"init must be one of \['pytorch', 'xavier'\], got 'zeros'"),
])
def test_config_rejects_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        Ko2023Config(**kwargs)


def test_cli_writes_table1_json_and_figure1_png(tmp_path, capsys):
    out = tmp_path / "results"
    status = main(["reproduce", "--runs", "2", "--epochs", "1", "--n-points", "200", "--out", str(out),
                   "--no-progress"])
    assert status == 0
    table = json.loads((out / "table1.json").read_text())
    assert set(table) == {"config", "paper", "ours", "runs", "figure1_sample_quality"} and len(table["runs"]) == 4
    assert table["config"]["n_points"] == 200
    assert (out / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["figure1.png", "table1.json"]  # no temporary files left
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "56832 ±\u00a02740" in printed
    before = (out / "table1.json").read_bytes()
    assert main(["reproduce", "--runs", "2", "--epochs", "2", "--n-points", "200", "--out", str(out),
                 "--no-progress"]) == 2  # an earlier result is kept
    assert "already holds table1.json and figure1.png from an earlier reproduction; pass --overwrite" in \
        capsys.readouterr().err
    assert (out / "table1.json").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--runs", "0"], "argument --runs: expected a positive integer, got 0"),
    (["reproduce", "--epochs", "ten"], "argument --epochs: expected a positive integer, got 'ten'"),
    (["reproduce", "--lr", "-1"], "argument --lr: expected a positive finite number, got -1"),
    (["reproduce", "--engine", "warp"], "argument --engine: invalid choice: 'warp'"),
    (["reproduce", "--colour"], "unrecognized arguments: --colour"),
    (["replicate"], "invalid choice: 'replicate'"),
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_output_path_that_is_a_file_exits_2_before_training(tmp_path, capsys):
    blocker = tmp_path / "table.txt"
    blocker.write_text("not a folder")
    assert main(["reproduce", "--out", str(blocker)]) == 2  # full size: would take minutes if it trained
    err = capsys.readouterr().err
    assert err.startswith("vaelib reproduce: error: out_dir") and err.count("\n") == 1


def test_python_dash_m_vaelib_has_no_traceback_on_bad_input():
    done = subprocess.run([sys.executable, "-m", "vaelib", "reproduce", "--runs", "-3"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_save_keeps_both_old_files_when_writing_fails(tiny_result, tmp_path, monkeypatch):
    (tmp_path / "table1.json").write_text("old")
    (tmp_path / "figure1.png").write_text("old")
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", lambda *args, **kwargs: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    with pytest.raises(OSError, match=r"cannot write the result file .*figure1\.png: no space left on device"):
        tiny_result.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure1.png", "table1.json"]  # no temporary left
    assert all((tmp_path / name).read_text() == "old" for name in ("table1.json", "figure1.png"))


def _data_with_variances(variances, n=2000):
    """Points whose population covariance is exactly diag(variances)."""
    x = torch.randn(n, len(variances), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x - x.mean(0)
    x = x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / n)).T
    return (x * torch.tensor(variances, dtype=torch.float64).sqrt()).float()


def test_linear_vae_optimum_keeps_the_directions_above_the_decoder_variance():
    x = _data_with_variances([3.0, 1.0, 0.1])
    per_point = ko2023.linear_vae_optimum(x, latent_dim=2, kl_weight=1.0)  # decoder variance 1/2
    assert per_point["active"] == 2 and per_point["decoder_variance"] == 0.5
    assert per_point["recon"] == pytest.approx(0.5 + 0.5 + 0.1, rel=1e-4)
    assert per_point["kl"] == pytest.approx(0.5 * (torch.tensor(6.0).log() + torch.tensor(2.0).log()).item(), rel=1e-4)
    one_code = ko2023.linear_vae_optimum(x, latent_dim=1, kl_weight=1.0)
    assert one_code["active"] == 1 and one_code["recon"] == pytest.approx(0.5 + 1.0 + 0.1, rel=1e-4)
    collapsed = ko2023.linear_vae_optimum(x, latent_dim=2, kl_weight=100.0)  # decoder variance 50
    assert collapsed == {"recon": pytest.approx(4.1, rel=1e-4), "kl": 0.0, "active": 0, "decoder_variance": 50.0}
    with pytest.raises(ValueError, match="kl_weight must be > 0, got 0"):
        ko2023.linear_vae_optimum(x, kl_weight=0.0)


def test_train_objective_and_sweep_give_table_rows():
    config = Ko2023Config(**{**TINY, "runs": 1, "epochs": 1})
    x = ko2023.make_data(config)
    trained, row = ko2023.train_objective(config, x, "elbo", progress=False)
    assert [run.spec for run in trained] == [RunSpec("elbo", 0)] and set(row) == {"recon", "recon_at_mean", "kl"}
    rows = ko2023.sweep(config, x, "lr", [1e-4, 1e-2], progress=False)
    assert list(rows) == [1e-4, 1e-2] and set(rows[1e-2]) == set(ko2023.COLUMNS)
    # one epoch at lr 1e-2 moves alpha further from its start than one at lr 1e-4
    assert rows[1e-2]["alpha"]["mean"] < rows[1e-4]["alpha"]["mean"] < 1.0
    with pytest.raises(ValueError, match="setting must be a field of Ko2023Config, got 'step'"):
        ko2023.sweep(config, x, "step", [1])


def test_step_size_figure_has_two_log_log_panels():
    import matplotlib.pyplot as plt

    row = lambda a, r: {"alpha": {"mean": a, "std": a / 2}, "recon": {"mean": r, "std": None}}
    fig = ko2023.step_size_figure({1e-4: row(1e-4, 0.02), 1e-3: row(8e-4, 0.09)}, Ko2023Config())
    assert len(fig.axes) == 2 and all(ax.get_xscale() == ax.get_yscale() == "log" for ax in fig.axes)
    assert "paper" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    plt.close(fig)


def test_every_engine_trains_the_same_runs():
    results = {name: ko2023.reproduce(Ko2023Config(**{**TINY, "engine": name}), progress=False).to_dict()["runs"]
               for name in ko2023.ENGINES}
    reference = results.pop("loop")
    for name, runs in results.items():
        for ours, ref in zip(runs, reference):
            assert (ours["objective"], ours["seed"]) == (ref["objective"], ref["seed"])
            assert ours["recon"] == pytest.approx(ref["recon"], rel=1e-4), name
            assert ours["kl"] == pytest.approx(ref["kl"], rel=1e-3, abs=1e-6), name


def test_figure1_quality_scores_each_cloud_and_the_data_itself(tiny_result):
    quality = tiny_result.sample_quality
    assert set(quality) == {"data", "proposed", "elbo"}
    assert set(quality["data"]) >= set(ko2023.QUALITY_LABELS)
    # a second draw of the data is as good as a generator can be: near 0 two-sample distance
    assert abs(quality["data"]["mmd2"]) < 0.002 and quality["data"]["cell_coverage"] > 0.95
    saved = tiny_result.to_dict()
    assert saved["figure1_sample_quality"] == quality
    assert {"recon", "recon_at_mean", "kl"} <= set(saved["runs"][0])
    assert "cells covered" in tiny_result.sample_quality_table()
