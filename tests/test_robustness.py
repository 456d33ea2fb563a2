"""Faults and bad input: atomic writes (vaelib._io), full disks, special files, killed writers, and
every bad input of the library and the command line answered by a vaelib error in one clear line."""
import errno
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vaelib
from vaelib import _io
from vaelib.__main__ import main
from vaelib.data import cosine_surface, read_idx
from vaelib.experiments import ko2023

ROOT = Path(__file__).resolve().parents[1]
SMALL_RUN = ["--runs", "1", "--epochs", "1", "--n-points", "200", "--no-progress"]
OLD = time.time() - 2 * _io.STALE_AFTER_SECONDS
X = cosine_surface(n=128, seed=0)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(_io.TEMPORARY_SUFFIX))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder in which no file can be created: a chmod 555 folder, or, for root (whom permissions
    do not stop), a folder of a read-only file system."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys/kernel"), Path("/proc/sys")):
        try:
            fd = os.open(candidate / ".vaelib-probe", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            yield candidate
            break
        os.close(fd)
        os.unlink(candidate / ".vaelib-probe")
    else:
        pytest.skip("no folder here refuses to be written to")
    folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------- vaelib._io

def test_write_file_writes_bytes_text_or_through_a_function_with_the_usual_mode(tmp_path):
    old_mask = os.umask(0o027)
    try:
        _io.write_file(tmp_path / "a.bin", b"\x00\x01")
        _io.write_file(tmp_path / "b.txt", "é")
        _io.write_file(tmp_path / "c.txt", lambda tmp: tmp.write_text("via a path"))
    finally:
        os.umask(old_mask)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" and (tmp_path / "b.txt").read_text() == "é"
    assert (tmp_path / "c.txt").read_text() == "via a path"
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.bin", "b.txt", "c.txt")} == {0o640}
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("where", ["os.write", "os.fsync", "os.replace"])
def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    target = tmp_path / "table1.json"
    target.write_text("old")
    monkeypatch.setattr(os, where.split(".")[1], _enospc)
    with pytest.raises(OSError) as info:
        _io.write_file(target, "new", what="the result file")
    monkeypatch.undo()
    assert str(info.value) == (f"cannot write the result file {target}: no space left on device; free some space "
                               "or write elsewhere")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["table1.json"]


def test_a_group_is_written_whole_or_not_at_all(tmp_path):
    table, figure = tmp_path / "table1.json", tmp_path / "figure1.png"
    table.write_text("old table")
    figure.write_text("old figure")

    def interrupted(tmp):
        tmp.write_text("half a figure")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.write_files({figure: interrupted, table: "new table"})
    with pytest.raises(OSError, match="cannot write the file .*table1.json: simulated"):
        _io.write_files({figure: "new figure", table: lambda tmp: _raise(OSError("simulated"))})
    assert (table.read_text(), figure.read_text()) == ("old table", "old figure")
    assert sorted(os.listdir(tmp_path)) == ["figure1.png", "table1.json"]
    _io.write_files({figure: "new figure", table: "new table"})
    assert (table.read_text(), figure.read_text()) == ("new table", "new figure")


def _raise(exc):
    raise exc


def test_ctrl_c_during_the_renames_is_held_back_until_the_group_is_complete(tmp_path, monkeypatch):
    table, figure = tmp_path / "table1.json", tmp_path / "figure1.png"
    real_replace = os.replace
    renamed = []

    def replace_then_interrupt(source, target):
        real_replace(source, target)
        renamed.append(Path(target).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the two renames
            time.sleep(0.05)  # time for Python to run the handler, which must not interrupt here

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _io.write_files({figure: "new figure", table: "new table"})
    assert renamed == ["figure1.png", "table1.json"]
    assert (table.read_text(), figure.read_text()) == ("new table", "new figure")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_stale_temporaries_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    stale = tmp_path / f".run.ckpt.abcd1234{_io.TEMPORARY_SUFFIX}"
    young = tmp_path / f".run.ckpt.efgh5678{_io.TEMPORARY_SUFFIX}"
    foreign = [tmp_path / ".run.ckpt.abcd1234.tmp", tmp_path / f"notes{_io.TEMPORARY_SUFFIX}"]
    for path in (stale, young, *foreign):
        path.write_bytes(b"partial")
    link = tmp_path / f".x.ijkl9012{_io.TEMPORARY_SUFFIX}"
    link.symlink_to(tmp_path / "elsewhere")
    for path in (stale, *foreign):
        os.utime(path, (OLD, OLD))
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    _io.write_file(tmp_path / "run.ckpt", b"new")
    assert not stale.exists()
    assert young.exists() and link.is_symlink() and all(path.exists() for path in foreign)


def test_temporaries_of_checkpoint_saves_killed_mid_write_are_cleaned_by_the_next_save(tmp_path):
    """Real processes killed while their save is flushing (as a crash or kill -9 would stop them)."""
    path = tmp_path / "run.ckpt"
    hang_in_fsync = ("import os, sys, time, vaelib\nos.fsync = lambda fd: time.sleep(600)\n"
                     "vaelib.save_checkpoint(sys.argv[1], vaelib.VAE(3, hidden=(256,)))\n")
    child = subprocess.Popen([sys.executable, "-c", hang_in_fsync, str(path)], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not _temporaries(tmp_path) and time.time() < deadline and child.poll() is None:
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    (orphan,) = _temporaries(tmp_path)
    os.utime(tmp_path / orphan, (OLD, OLD))  # as if killed a while ago
    vaelib.save_checkpoint(path, vaelib.VAE(3))
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]


def test_check_writable_refuses_special_files_folders_and_read_only_folders(tmp_path, read_only_folder):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match=r"it is a FIFO \(named pipe\), not a regular file"):
        _io.check_writable(fifo, "the checkpoint")
    with pytest.raises(FileExistsError, match="it is a character device"):
        _io.check_writable("/dev/null", "the checkpoint")
    with pytest.raises(IsADirectoryError, match="it is a folder; give a file name"):
        _io.check_writable(tmp_path, "the checkpoint")
    with pytest.raises(FileNotFoundError, match="the folder .*missing does not exist; create it first"):
        _io.check_writable(tmp_path / "missing" / "a", "the checkpoint")
    with pytest.raises(OSError, match=r"cannot write the checkpoint .*: the folder .* is not writable"):
        _io.check_writable(read_only_folder / "run.ckpt", "the checkpoint")
    with pytest.raises(ValueError, match="checkpoint is empty; give a file name"):
        _io.check_writable("", argument="checkpoint")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def _device_node(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("creating a device node needs privileges")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "it is a folder; give a file name"),
    (os.mkfifo, r"it is a FIFO \(named pipe\), not a regular file, and writing would replace it by one"),
    (_device_node, "it is a character device, not a regular file"),
    (lambda p: p.parent.rename(p.parent.with_name("moved")), "the folder .* does not exist; create it first"),
], ids=["folder", "FIFO", "device node", "missing folder"])
@pytest.mark.parametrize("trainer", ["fit", "fit_batched"])
def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_training(tmp_path, make, message, trainer):
    folder = tmp_path / "runs"
    folder.mkdir()
    path = folder / "run.ckpt"
    make(path)
    kind = os.stat(path).st_mode if os.path.exists(path) else None
    epochs = []
    with pytest.raises(OSError, match=rf"checkpoint='.*run\.ckpt': {message}"):
        if trainer == "fit":
            vaelib.fit(vaelib.VAE(3, hidden=(8,)), vaelib.ELBO(), X, epochs=2, progress=False, checkpoint=path,
                       on_epoch_end=lambda e, m: epochs.append(e))
        else:
            vaelib.fit_batched([vaelib.VAE(3, hidden=(8,))], [vaelib.ELBO()], X, seeds=[0], epochs=2, progress=False,
                               checkpoint=path)
    assert epochs == []
    if kind is not None:
        assert stat.S_IFMT(os.stat(path).st_mode) == stat.S_IFMT(kind)  # never replaced by a regular file


def test_a_checkpoint_in_a_read_only_folder_is_refused_before_training(read_only_folder):
    epochs = []
    with pytest.raises(OSError, match=r"checkpoint='.*run\.ckpt': the folder .* is not writable \(.*\)"):
        vaelib.fit(vaelib.VAE(3, hidden=(8,)), vaelib.ELBO(), X, epochs=2, progress=False,
                   checkpoint=read_only_folder / "run.ckpt", on_epoch_end=lambda e, m: epochs.append(e))
    assert epochs == []


# ---------------------------------------------------------------------------------------------- library errors


def _fit(x=X, model=None, objective=None, **kwargs):
    vaelib.seed_everything(0)
    return vaelib.fit(model or vaelib.VAE(3, hidden=(8,)), objective or vaelib.ELBO(), x,
                      **{"epochs": 1, "batch_size": 64, "progress": False, **kwargs})


def _fit_batched(x=X, model=None, **kwargs):
    return vaelib.fit_batched([model or vaelib.VAE(3, hidden=(8,))], [vaelib.ELBO()], x, seeds=[0],
                              **{"epochs": 1, "batch_size": 64, "progress": False, **kwargs})


BAD_INPUT = [
    ("fit: Bernoulli decoder, data outside [0, 1]", lambda: _fit(model=vaelib.VAE(3, decoder="bernoulli")),
     ValueError, (r"the model has a Bernoulli decoder \(it outputs logits\), which models data in \[0, 1\], "
                  r"but x holds values in \[-1\.\d+, 1\.\d+\]; rescale x to \[0, 1\]")),
    ("fit_batched: Bernoulli decoder, data outside [0, 1]",
     lambda: _fit_batched(model=vaelib.VAE(3, decoder="bernoulli")), ValueError, r"the model has a Bernoulli decoder"),
    ("fit: float64 data", lambda: _fit(x=X.double()), TypeError,
     r"x has dtype torch.float64 but the model's parameters are torch.float32; convert with x.to\(torch.float32\)"),
    ("fit: float16 data", lambda: _fit(x=X.half()), TypeError, r"x has dtype torch.float16 but the model's"),
    ("fit: lr 1e39", lambda: _fit(lr=1e39), ValueError,
     r"lr=1e\+39 is too large for torch.float32 parameters \(the largest torch.float32 is 3.403e\+38\)"),
    ("fit_batched: lr 1e39", lambda: _fit_batched(lr=1e39), ValueError, r"lr=1e\+39 is too large"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_vaelib_error_before_training(call, error, message):
    with pytest.raises(error, match=message):
        call()


UNUSABLE_TENSORS = [
    ("sparse", lambda: X.to_sparse(), TypeError, "x is a sparse_coo tensor; vaelib takes dense tensors"),
    ("meta", lambda: torch.empty(128, 3, device="meta"), ValueError, "x is on the meta device"),
    ("no features", lambda: torch.empty(128, 0), ValueError, r"x has no features: shape \(128, 0\)"),
]
CONSUMERS = {
    "fit": lambda x: _fit(x=x),
    "fit_batched": lambda x: _fit_batched(x=x),
    "iwae_bound": lambda x: vaelib.estimators.iwae_bound(vaelib.VAE(3, hidden=(8,)), x, k=2),
    "mmd2": lambda x: vaelib.metrics.mmd2(x, X),
}


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("make, error, message", [t[1:] for t in UNUSABLE_TENSORS], ids=[t[0] for t in UNUSABLE_TENSORS])
def test_tensors_vaelib_cannot_use_are_refused_up_front_with_one_clear_error(consumer, make, error, message):
    with pytest.raises(error, match=message):
        CONSUMERS[consumer](make())


def test_an_iwae_bound_that_would_not_finish_is_refused_with_its_estimate():
    model = vaelib.VAE(3, hidden=(8,))
    with pytest.raises(vaelib.limits.TooLarge, match=r"an IWAE bound with k = 1,000,000,000,000 samples for each of "
                                                     r"128 points takes about .* more than the limit of 1e\+16"):
        vaelib.estimators.iwae_bound(model, X, k=10**12)


def test_a_bernoulli_decoder_trains_on_data_in_the_unit_interval():
    vaelib.seed_everything(0)
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(0))
    assert len(_fit(x=x, model=vaelib.VAE(3, decoder="bernoulli"))) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("train", [_fit, _fit_batched], ids=["fit", "fit_batched"])
def test_cuda_without_cuda_says_so(train):
    with pytest.raises(ValueError, match=r"device='cuda' is not available on this machine \(.*\); use device='cpu'"):
        train(device="cuda")


@pytest.mark.parametrize("train", [_fit, lambda x: _fit_batched(x, backend="torch"),
                                   lambda x: _fit_batched(x, backend="auto")], ids=["fit", "generic", "auto"])
def test_data_that_requires_grad_gets_no_gradient(train):
    x = X.clone().requires_grad_(True)
    train(x)
    assert x.grad is None


def test_an_idx_header_whose_size_overflows_int64_is_refused(tmp_path):
    for name, dims in (("three.idx", [2**32 - 1] * 3), ("wraps-to-zero.idx", [2**16] * 4)):
        path = tmp_path / name
        path.write_bytes(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        expected = 1
        for d in dims:
            expected *= d
        with pytest.raises(ValueError, match=rf"holds 0 data bytes but its header promises {expected} for shape"):
            read_idx(path)


def test_the_memory_estimate_grows_with_every_size_and_refuses_what_does_not_fit(monkeypatch):
    base = ko2023.Ko2023Config()
    sizes = [ko2023.memory_needed(base.__class__(**{**base.__dict__, key: value}))
             for key, value in (("runs", 10), ("runs", 20), ("epochs", 400), ("n_points", 20_000))]
    assert sizes[0] < sizes[1] and sizes[0] < sizes[2] and sizes[0] < sizes[3]
    ko2023.check_feasible(base)  # the paper's reproduction fits any machine that runs the tests
    monkeypatch.setattr(ko2023, "_available_memory", lambda: sizes[0] - 1)
    with pytest.raises(ValueError, match=r"this reproduction needs about 0.\d+ GB of memory \(runs=10, epochs=200, "
                                         r"n_points=10000, n_samples=10000\) and this machine has 0.\d+ GB free"):
        ko2023.check_feasible(base)


# ---------------------------------------------------------------------------------------------- command line

def _cli(argv, capsys):
    status = main(["reproduce", *argv])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaelib reproduce: error: "), err
    return status, err


@pytest.mark.parametrize("argv, message", [
    (["--seed", str(2**64)], "seed=18446744073709551616 leaves no room for 1 runs"),
    (["--seed", str(2**63 - 1), "--runs", "2"], "use a seed of at most 9223372036854775806"),
    (["--lr", "1e39"], "lr=1e+39 is too large for torch.float32 parameters"),
    (["--runs", str(10**9)], "this reproduction needs about 2.15e+05 GB of memory (runs=1000000000"),
    (["--epochs", str(10**12)], "needs about 1.79e+06 GB of memory"),
    (["--n-points", str(10**12)], "needs about 6.64e+05 GB of memory"),
    (["--out", ""], "out_dir is empty; give a folder such as 'results'"),
])
def test_the_command_line_refuses_impossible_settings_in_one_line_before_training(argv, message, capsys,
                                                                                   monkeypatch, tmp_path):
    monkeypatch.setattr(ko2023, "make_data", _must_not_run)
    monkeypatch.chdir(tmp_path)
    status, err = _cli([*SMALL_RUN, *argv] if "--out" in argv else [*SMALL_RUN, "--out", str(tmp_path), *argv],
                       capsys)
    assert status == 2 and message in err
    assert os.listdir(tmp_path) == []


def _must_not_run(*args, **kwargs):
    raise AssertionError("training started")


def test_a_full_disk_while_writing_the_results_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", _enospc)
    status, err = _cli([*SMALL_RUN, "--out", str(tmp_path)], capsys)
    assert status == 2
    assert err == (f"vaelib reproduce: error: cannot write the result file {tmp_path / 'figure1.png'}: no space left "
                   "on device; free some space or write elsewhere\n")
    assert not (tmp_path / "table1.json").exists()


def test_ctrl_c_stops_reproduce_with_one_line_and_status_130(tmp_path):
    """A real SIGINT, as a terminal's Ctrl-C sends it, once the first training state is saved."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "vaelib", "reproduce", "--runs", "1", "--epochs", "300000",
                              "--n-points", "200", "--no-progress", "--out", str(tmp_path)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_save = tmp_path / "reproduce-state" / "batched.ckpt"
    deadline = time.time() + 240
    while not first_save.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    state = tmp_path / "reproduce-state"
    assert err == (f"vaelib reproduce: error: interrupted; its training state is saved in {state}: run the same "
                   "command with --resume to continue\n")
    assert not (tmp_path / "table1.json").exists()


def test_an_iwae_bound_of_a_model_with_nan_weights_is_an_error_not_a_number():
    model = vaelib.VAE(3, hidden=(8,))
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="the IWAE bound is NaN for 128 of 128 points"):
        vaelib.estimators.iwae_bound(model, X, k=2)


def test_a_broadcast_view_of_many_rows_is_validated_without_materialising_it():
    x = torch.tensor([[1.0, 2.0, 3.0]]).expand(10**10, 3)  # 120 GB if materialised
    assert vaelib._checks.data_matrix("x", x) is x
    with pytest.raises(ValueError, match="non-finite values \\(NaN or inf\\) in 10000000000 of 10000000000 rows"):
        vaelib._checks.data_matrix("x", torch.tensor([[1.0, float("nan"), 3.0]]).expand(10**10, 3))
