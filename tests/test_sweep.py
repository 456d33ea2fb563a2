"""vaelib.sweep: a grid on a Dask cluster gives one table, whatever the chunking, the number of
workers, a killed worker or an interruption; bad sweep files get one line and exit status 2.

Tolerance. A run is seeded by its own seed and fit_batched's runs are independent of their
batch-mates, so where the engine's C kernel trains, a run's numbers are the same bit for bit in any
chunk on any worker: the tables are compared exactly (rtol = 0), down to the bytes of runs.csv. On
the generic PyTorch path (no C compiler, or backend = "torch") batched matrix products may be blocked
differently for another number of runs: rtol = 1e-6 (none was seen here; a wrong seed or data order
changes the numbers at the 1e-2 level).

The clusters are real distributed.LocalCluster processes on localhost. pytest-timeout is not a
dependency, so each test runs under a deadline of its own (faulthandler prints every thread's stack
and ends the session) that a hang, not a slow machine, would reach.
"""
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vaelib import limits, sweep
from vaelib.cli import main
from vaelib.engine import kernel_available

DEADLINE_S = 900
GENERIC_RTOL = 1e-6
# 12 runs: 3 seeds of the ELBO and of GECO, and of eq. 7 ("ko") at two deltas.
SMALL = """
[data]
n = 256
seed = 3
[model]
class = "VAE"
hidden = [8]
[training]
epochs = 2
batch_size = 64
lr = 0.01
[axes]
seed = [0, 1, 2]
objective = ["elbo", "geco", "ko"]
delta = [0.1, 1.0]
"""
# Chunks of one run that take a moment each, so that a worker can be killed while it trains one.
SLOW = """
[data]
n = 4000
[model]
class = "VAE"
hidden = [16]
[training]
epochs = 60
batch_size = 100
[objective]
name = "elbo"
[axes]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""


@pytest.fixture(autouse=True)
def _deadline():
    faulthandler.dump_traceback_later(DEADLINE_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of two worker processes, shared by the tests that need a running cluster."""
    with sweep.local_cluster(2) as cluster:
        yield cluster


def _spec(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _assert_same_rows(rows, expected):
    assert [row.keys() for row in rows] == [row.keys() for row in expected]
    if kernel_available():
        assert rows == expected
        return
    for row, reference in zip(rows, expected):
        for name, value in reference.items():
            if isinstance(value, float):
                assert value == pytest.approx(row[name], rel=GENERIC_RTOL), name
            else:
                assert row[name] == value, name


# --- the grid ---------------------------------------------------------------------------------

def test_the_grid_expands_to_runs_and_settings_apply_where_an_objective_takes_them(tmp_path):
    grid = sweep.load_spec(_spec(tmp_path, SMALL))
    assert grid.axes == ("seed", "objective", "delta")
    assert len(grid.runs) == 12 == len({run.key for run in grid.runs})
    by_objective = {name: [run for run in grid.runs if run.spec["objective"]["name"] == name]
                    for name in ("elbo", "geco", "ko")}
    assert [len(runs) for runs in by_objective.values()] == [3, 3, 6]
    assert all(run.settings["delta"] is None and "delta" not in run.spec["objective"] for run in by_objective["elbo"])
    assert sorted({run.settings["delta"] for run in by_objective["ko"]}) == [0.1, 1.0]
    assert grid.runs[0].spec["model"]["in_dim"] == 3  # from the data's width


def test_a_run_key_changes_with_any_setting_and_not_with_how_a_number_is_written(tmp_path):
    keys = {run.key for run in sweep.load_spec(_spec(tmp_path, SMALL)).runs}
    same = {run.key for run in sweep.load_spec(_spec(tmp_path, SMALL.replace("[0.1, 1.0]", "[0.1, 1]"))).runs}
    longer = {run.key for run in sweep.load_spec(_spec(tmp_path, SMALL.replace("epochs = 2", "epochs = 3"))).runs}
    other_data = {run.key for run in sweep.load_spec(_spec(tmp_path, SMALL.replace("seed = 3", "seed = 4"))).runs}
    assert same == keys
    assert not longer & keys and not other_data & keys


def test_a_data_file_is_keyed_by_its_contents_and_scored_against_itself(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "points.npy", rng.normal(size=(200, 4)).astype(np.float32))
    text = """
[data]
file = "points.npy"
[model]
class = "VAE"
hidden = [8]
[training]
epochs = 1
batch_size = 50
[objective]
name = "elbo"
[evaluation]
metrics = ["recon", "kl", "mmd2", "energy"]
samples = 100
"""
    grid = sweep.load_spec(_spec(tmp_path, text))
    (run,) = grid.runs
    x = grid.data[sweep.spec.spec_hash(run.spec["data"])]
    (result,) = sweep.train_chunk(x.numpy(), [{"key": run.key, "spec": run.spec}])
    assert result["status"] == "ok" and list(result["eval"]) == ["recon", "kl", "mmd2", "energy"]
    assert all(np.isfinite(v) for v in result["eval"].values())
    np.save(tmp_path / "points.npy", rng.normal(size=(200, 4)).astype(np.float32))  # same name, new numbers
    assert sweep.load_spec(tmp_path / "sweep.toml").runs[0].key != run.key
    with pytest.raises(sweep.SpecError, match="cosine surface"):
        sweep.load_spec(_spec(tmp_path, text.replace('"energy"]', '"energy", "cell_coverage"]')))


# --- a chunk on a worker ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_run_gives_the_same_numbers_in_any_chunk(tmp_path, backend):
    text = SMALL.replace("n = 256", "n = 128").replace("epochs = 2", f'epochs = 1\nbackend = "{backend}"')
    grid = sweep.load_spec(_spec(tmp_path, text))
    x = next(iter(grid.data.values())).numpy()
    runs = [{"key": run.key, "spec": run.spec} for run in grid.runs[:5]]
    together = sweep.train_chunk(x, runs)
    alone = [sweep.train_chunk(x, [run])[0] for run in runs]
    rows = [{**r["final"], **r["eval"]} for r in together]
    expected = [{**r["final"], **r["eval"]} for r in alone]
    if backend == "auto" and kernel_available():
        assert rows == expected
    else:
        for row, reference in zip(rows, expected):
            assert row == pytest.approx(reference, rel=GENERIC_RTOL)


def test_a_diverging_run_is_recorded_and_its_batch_mates_do_not_depend_on_it(tmp_path):
    # alpha_init = 3e38: alpha times the constraint overflows float32 at the first step
    text = SMALL.replace('objective = ["elbo", "geco", "ko"]\ndelta = [0.1, 1.0]',
                         'objective = ["ko"]\nalpha_init = [1.0, 3e38]')
    grid = sweep.load_spec(_spec(tmp_path, text))
    x = next(iter(grid.data.values())).numpy()
    runs = [{"key": run.key, "spec": run.spec} for run in grid.runs]
    results = sweep.train_chunk(x, runs)
    assert [r["status"] for r in results] == ["ok", "diverged"] * 3
    assert "not finite" in results[1]["error"]
    finished = [run for run, result in zip(runs, results) if result["status"] == "ok"]
    assert sweep.train_chunk(x, finished) == [r for r in results if r["status"] == "ok"]


# --- whole sweeps on clusters ---------------------------------------------------------------------

def test_the_table_is_the_same_on_one_or_two_workers_and_in_any_chunks(tmp_path, two_workers, capsys):
    spec = _spec(tmp_path, SMALL)
    one = sweep.run_sweep(spec, tmp_path / "one", workers=1, chunk_size=12, progress=False)
    fives = sweep.run_sweep(spec, tmp_path / "fives", scheduler=two_workers.scheduler_address, chunk_size=5,
                            progress=False)
    # the command line, in chunks of one run
    status = main(["sweep", str(spec), "--out", str(tmp_path / "ones"), "--scheduler",
                   two_workers.scheduler_address, "--chunk-size", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 0 and "trained 12 in 12 chunks" in printed and "geco" in printed
    assert (one.chunks_trained, fives.chunks_trained) == (1, 3)
    assert len(list((tmp_path / "ones" / "chunks").glob("*.json"))) == 12
    ones = json.loads((tmp_path / "ones" / "runs.json").read_text())
    assert len(one.rows) == 12 and all(row["status"] == "ok" for row in one.rows)
    _assert_same_rows(fives.rows, one.rows)
    _assert_same_rows(ones, one.rows)
    if kernel_available():
        assert (tmp_path / "ones" / "runs.csv").read_bytes() == (tmp_path / "one" / "runs.csv").read_bytes()
    # the summary: one row per objective and delta, over the 3 seeds
    assert [(s["objective"], s["delta"], s["runs"]) for s in one.summary] == [
        ("elbo", None, 3), ("geco", None, 3), ("ko", 0.1, 3), ("ko", 1.0, 3)]
    recon = [row["eval_recon"] for row in one.rows if row["objective"] == "geco"]
    assert one.summary[1]["eval_recon_mean"] == pytest.approx(np.mean(recon))
    assert one.summary[1]["eval_recon_std"] == pytest.approx(np.std(recon, ddof=1))


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path, two_workers):
    class Stop(Exception):
        pass

    def stop_after_two(path):
        arrived.append(path)
        if len(arrived) == 2:
            raise Stop

    spec, out, arrived = _spec(tmp_path, SMALL), tmp_path / "out", []
    with pytest.raises(Stop):
        sweep.run_sweep(spec, out, scheduler=two_workers.scheduler_address, chunk_size=2, progress=False,
                        on_chunk=stop_after_two)
    before = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (out / "chunks").glob("*.json")}
    assert set(before) == set(arrived) and not (out / "runs.csv").exists()
    (out / "chunks" / "broken.json").write_text('{"format": 1, "chunk": ')  # a file cut short is not a result
    result = sweep.run_sweep(spec, out, scheduler=two_workers.scheduler_address, chunk_size=3, progress=False)
    assert (result.runs_skipped, result.runs_trained, result.chunks_trained) == (4, 8, 3)
    assert result.ignored_files == [out / "chunks" / "broken.json"]
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in before} == before  # untouched
    assert len(result.rows) == 12 and all(row["status"] == "ok" for row in result.rows)
    again = sweep.run_sweep(spec, out, progress=False)  # nothing left: no cluster is started
    assert (again.runs_trained, again.runs_skipped) == (0, 12) and again.rows == result.rows
    # a changed spec is never taken for a done one: only the new runs are pending
    done, _ = sweep.client.done_runs(out / "chunks")
    more_seeds = sweep.load_spec(_spec(tmp_path, SMALL.replace("[0, 1, 2]", "[0, 1, 2, 3]"), "more.toml"))
    assert [run.settings["seed"] for run in more_seeds.runs if run.key not in done] == [3, 3, 3, 3]
    longer = sweep.load_spec(_spec(tmp_path, SMALL.replace("epochs = 2", "epochs = 3"), "longer.toml"))
    assert not any(run.key in done for run in longer.runs)


def test_a_worker_killed_mid_sweep_leaves_every_row_once(tmp_path, two_workers):
    from distributed import Client

    killed = []
    with Client(two_workers) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker(path):
            if killed:
                return
            busy = {worker: tasks for worker, tasks in client.processing().items() if tasks}
            victim = next(iter(busy))
            killed.append((victim, busy[victim]))
            os.kill(pids[victim], signal.SIGKILL)

        result = sweep.run_sweep(_spec(tmp_path, SLOW), tmp_path / "out", scheduler=two_workers.scheduler_address,
                                 chunk_size=1, progress=False, on_chunk=kill_a_busy_worker)
    assert killed and killed[0][1], "the killed worker was training a chunk"
    assert [row["seed"] for row in result.rows] == list(range(8))
    assert all(row["status"] == "ok" for row in result.rows)
    stored = [entry["key"] for path in (tmp_path / "out" / "chunks").glob("*.json")
              for entry in json.loads(path.read_text())["runs"]]
    assert sorted(stored) == sorted(run.key for run in sweep.load_spec(tmp_path / "sweep.toml").runs)


# --- the command line -----------------------------------------------------------------------------

BAD_SPECS = [
    (SMALL.replace("delta = [0.1, 1.0]", "detla = [0.1, 1.0]"), "unknown axis 'detla'"),
    (SMALL.replace("seed = [0, 1, 2]", "seed = []"), "axis 'seed' is empty"),
    (SMALL.replace("seed = [0, 1, 2]", "seed = 2"), "axis 'seed' must be a list"),
    (SMALL + 'lr = ["fast"]\n', "lr must be a number"),
    (SMALL.replace("delta = [0.1, 1.0]", 'delta = [0.1, "big"]'), "delta must be a number"),
    (SMALL.replace("epochs = 2", 'epochs = "two"'), "epochs must be an int"),
    (SMALL.replace('"geco"', '"gecko"'), "unknown objective 'gecko'"),
    (SMALL.replace('class = "VAE"', 'class = "VEA"'), "unknown model class 'VEA'"),
    (SMALL + "\"model.width\" = [3]\n", "takes no argument 'width'"),
    (SMALL.replace("[axes]", '[evaluation]\nmetrics = ["fid"]\n[axes]'), "unknown metric 'fid'"),
    (SMALL.replace("[axes]", "[axes"), "not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_a_bad_spec_gets_one_line_and_exit_status_2(tmp_path, capsys, text, message):
    status = main(["sweep", str(_spec(tmp_path, text)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("vaelib sweep: error: sweep.toml") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # checked before anything is created or trained


def test_the_command_line_as_a_user_runs_it(tmp_path):
    bad = _spec(tmp_path, SMALL.replace("seed = [0, 1, 2]", "seed = []"))
    done = subprocess.run([sys.executable, "-m", "vaelib", "sweep", str(bad), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is empty" in done.stderr


def test_workers_and_a_scheduler_are_one_or_the_other(tmp_path, capsys):
    status = main(["sweep", str(_spec(tmp_path, SMALL)), "--out", str(tmp_path / "out"), "--workers", "2",
                   "--scheduler", "tcp://127.0.0.1:1"])
    assert status == 2 and "one or the other" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "example:" in out and "[axes]" in out and "--scheduler" in out


# --- what a sweep refuses before any work: sizes, nesting, special files -------------------------

TOO_LARGE = [
    (SMALL.replace("seed = [0, 1, 2]", f"seed = {list(range(400))}") + f"lr = {[0.001 + i / 1e6 for i in range(300)]}\n",
     "the grid (the product of the axes' lengths) has 720,000, more than the limit of 100,000"),
    (SMALL.replace("hidden = [8]", "hidden = [1000000000]"), "model VAE {'hidden': [1000000000], 'in_dim': 3} needs about"),
    (SMALL.replace("[axes]", '[evaluation]\nmetrics = ["mmd2"]\nsamples = 1000000000000\n[axes]'),
     "[evaluation] samples = 1,000,000,000,000 needs about 96 TB of memory"),
    (SMALL.replace("seed = [0, 1, 2]", "seed = " + "[" * 5000 + "]" * 5000),
     "nests lists or tables more than 64 levels deep, deeper than any sweep file"),
]


@pytest.mark.parametrize("text, message", TOO_LARGE, ids=["grid", "model", "samples", "nesting"])
def test_work_that_cannot_finish_or_fit_is_refused_in_one_line_before_anything_runs(tmp_path, capsys, text,
                                                                                      message):
    started = time.perf_counter()
    status = main(["sweep", str(_spec(tmp_path, text)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert time.perf_counter() - started < 60 and not (tmp_path / "out").exists()


def test_the_limits_are_lifted_by_allow_large_and_a_fifo_is_no_sweep_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep.spec, "MAX_RUNS", 11)
    with pytest.raises(limits.TooLarge, match="has 18, more than the limit of 11; split the sweep"):
        sweep.load_spec(_spec(tmp_path, SMALL))
    with limits.allow_large():
        assert len(sweep.load_spec(_spec(tmp_path, SMALL)).runs) == 12
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it for reading would block for ever
    assert main(["sweep", str(fifo), "--out", str(tmp_path / "out")]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err


# --- a scheduler address that is no Dask scheduler ---------------------------------------------------

def _serve(greeting: bytes | None) -> tuple[str, socket.socket]:
    """A local TCP service in a thread: it accepts, sends ``greeting`` (None: nothing, ever), and
    keeps the connection open."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            if greeting is not None:
                connection.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}", server


@pytest.mark.parametrize("greeting, message", [
    (None, "it said nothing within 0.5 s"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "it answered b'HTTP/1.1', not a Dask handshake"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "it answered b'SSH-2.0-', not a Dask handshake"),
], ids=["silent", "http", "ssh"])
def test_a_scheduler_address_that_is_no_dask_scheduler_is_one_line_within_the_bound(tmp_path, capsys, monkeypatch,
                                                                                      greeting, message):
    monkeypatch.setattr(sweep.client, "HANDSHAKE_TIMEOUT_S", 0.5)
    address, server = _serve(greeting)
    try:
        started = time.perf_counter()
        status = main(["sweep", str(_spec(tmp_path, SMALL)), "--out", str(tmp_path / "out"), "--scheduler",
                       address, "--no-progress"])
        elapsed = time.perf_counter() - started
    finally:
        server.close()
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert f"no Dask scheduler answers at '{address}': {message}" in err
    assert elapsed < 60  # the spec's checks and the probe; a client would have waited for ever or allocated EiB
    assert main(["sweep", str(_spec(tmp_path, SMALL)), "--out", str(tmp_path / "out"), "--scheduler",
                 "http://127.0.0.1:8787"]) == 2
    assert "is not a Dask address" in capsys.readouterr().err


# --- stored results are verified -----------------------------------------------------------------

def test_an_edited_result_does_not_verify_and_its_runs_are_trained_again(tmp_path, two_workers, capsys):
    spec = _spec(tmp_path, SMALL.replace('"elbo", "geco", "ko"', '"elbo", "ko"').replace("[0, 1, 2]", "[0]"))
    out = tmp_path / "out"  # 3 runs: the ELBO, and eq. K7 at two deltas
    argv = ["sweep", str(spec), "--out", str(out), "--scheduler", two_workers.scheduler_address, "--no-progress",
            "--chunk-size", "1"]
    assert main(argv) == 0
    original = json.loads((out / "runs.json").read_text())
    chunk = sorted((out / "chunks").glob("*.json"))[0]
    content = json.loads(chunk.read_text())
    content["runs"][0]["result"]["eval"]["recon"] = 123.0  # the file stays valid JSON with every key and spec
    chunk.write_text(json.dumps(content))
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"note: {chunk} does not verify" in printed and "trained 1 in 1 chunks" in printed
    assert json.loads((out / "runs.json").read_text()) == original
    assert "123.0" not in (out / "runs.csv").read_text() + (out / "runs.json").read_text()
    assert sweep.client.done_runs(out / "chunks")[1] == []  # retrained and stored again, verified


# --- Ctrl-C ------------------------------------------------------------------------------------------

def test_ctrl_c_stops_a_sweep_with_one_line_and_status_130(tmp_path):
    """A terminal's Ctrl-C reaches the whole foreground process group, the workers too."""
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "vaelib", "sweep", str(_spec(tmp_path, SLOW)), "--out", str(out),
                              "--workers", "2", "--chunk-size", "1", "--no-progress"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not list(out.glob("chunks/*.json")) and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert err == (f"vaelib sweep: error: interrupted; the finished chunks are saved in {out}: run the same command "
                   "again to continue\n")


def test_keep_models_saves_each_run_and_holdout_scores_rows_left_out_of_training(tmp_path, two_workers, capsys):
    """sweep --keep-models writes a checkpoint per run that vaelib.load_model rebuilds with the
    trained weights; --holdout trains on the rows split_indices(seed 0) leaves in and scores the
    others (heldout_recon, heldout_kl); a run whose checkpoint is missing is trained again, the same."""
    import torch

    import vaelib
    from vaelib.data import load_array, split_indices

    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "points.csv", rng.normal(size=(120, 4)) * [1, 2, 3, 4], delimiter=",", fmt="%.6g")
    spec = _spec(tmp_path, '[data]\nfile = "points.csv"\n[model]\nclass = "VAE"\nhidden = [8]\n[training]\n'
                           'epochs = 2\nbatch_size = 40\n[objective]\nname = "elbo"\n[axes]\nseed = [0, 1]\n')
    out = tmp_path / "out"
    command = ["sweep", str(spec), "--out", str(out), "--scheduler", two_workers.scheduler_address, "--no-progress",
               "--keep-models", "--holdout", "0.25"]
    assert main(command) == 0, capsys.readouterr().err
    assert "trained 2 in" in capsys.readouterr().out
    rows = json.loads((out / "runs.json").read_text())
    x = load_array(tmp_path / "points.csv")
    _, heldout_rows = split_indices(len(x), 0.25, seed=0)
    grid = sweep.load_spec(spec, holdout=0.25)
    assert [run.key[:12] for run in grid.runs] == [row["run"] for row in rows]
    assert {run.key for run in grid.runs}.isdisjoint(run.key for run in sweep.load_spec(spec).runs)
    weights = {}
    for row, run in zip(rows, grid.runs):
        path = out / "models" / f"{row['run']}.ckpt"
        model = vaelib.load_model(path)
        weights[row["run"]] = {k: v.clone() for k, v in model.state_dict().items()}
        assert vaelib.checkpoint.load_checkpoint(path).history["loss"][-1] == pytest.approx(row["final_loss"])
        expected = sweep.worker.evaluate(model, x[heldout_rows], {**run.spec, "evaluation": {
            **run.spec["evaluation"], "metrics": ["recon", "kl"]}})
        assert row["eval_heldout_recon"] == pytest.approx(expected["recon"], rel=1e-6)
        assert row["eval_heldout_kl"] == pytest.approx(expected["kl"], rel=1e-6)
        assert np.isfinite(row["eval_recon"]) and row["eval_recon"] != row["eval_heldout_recon"]
    (out / "models" / f"{rows[0]['run']}.ckpt").unlink()
    assert main(command) == 0
    assert "trained 1 in 1 chunks" in capsys.readouterr().out
    retrained = vaelib.load_model(out / "models" / f"{rows[0]['run']}.ckpt").state_dict()
    for name, value in weights[rows[0]["run"]].items():
        assert torch.allclose(retrained[name], value, rtol=GENERIC_RTOL, atol=1e-7), name
    _assert_same_rows(json.loads((out / "runs.json").read_text()), rows)
