"""Checkpoints: round trips, atomic writes, corrupted files, no code execution on load."""
import json
import os
import re
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

import vaelib
from vaelib import checkpoint as ck
from vaelib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaelib.models import load_model, register_model


def _trained_state(steps=3):
    """A VAE, a Ko objective and an Adam optimiser after a few steps: every kind of state."""
    vaelib.seed_everything(0)
    model = vaelib.VAE(3, hidden=(16, 8))
    objective = vaelib.KoLagrangian(delta=0.2, alpha_init=0.5)
    opt = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=1e-2)
    x = torch.randn(32, 3)
    for _ in range(steps):
        opt.zero_grad()
        objective(x, model(x))["loss"].backward()
        opt.step()
    return model, objective, opt


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _optimizer_states_equal(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys() and all(
        _states_equal(sa["state"][i], sb["state"][i]) for i in sa["state"])


@pytest.fixture
def saved(tmp_path):
    model, objective, opt = _trained_state()
    path = save_checkpoint(tmp_path / "run.ckpt", model, objective=objective, optimizer=opt,
                           history={"loss": [2.0, 1.5]}, rng_state={"torch": torch.get_rng_state()},
                           fit_settings={"seed": 3})
    return path, model, objective, opt


# ---------------------------------------------------------------------------------------------- round trips

def test_round_trip_restores_model_objective_optimizer_history_and_rng(saved):
    path, model, objective, opt = saved
    ckpt = load_checkpoint(path)
    assert ckpt.history == {"loss": [2.0, 1.5]} and ckpt.fit_settings == {"seed": 3}
    assert torch.equal(ckpt.rng_state["torch"], torch.get_rng_state())
    vaelib.seed_everything(1)  # different initial weights, alpha and empty optimiser state
    model2 = vaelib.VAE(3, hidden=(16, 8))
    objective2 = vaelib.KoLagrangian(delta=0.2, alpha_init=3.0)
    opt2 = torch.optim.Adam([*model2.parameters(), *objective2.parameters()], lr=1e-2)
    assert not _states_equal(model.state_dict(), model2.state_dict())
    ckpt.restore(model2, objective2, opt2)
    assert _states_equal(model.state_dict(), model2.state_dict())
    assert torch.equal(objective.alpha, objective2.alpha) and objective2.alpha.item() != 3.0
    assert _optimizer_states_equal(opt, opt2)  # Adam's moments, step counts, betas as a tuple


def test_load_model_rebuilds_from_the_stored_constructor_arguments(saved):
    path, model, _, _ = saved
    rebuilt = load_model(path)
    assert type(rebuilt) is vaelib.VAE and rebuilt.init_args == {
        "in_dim": 3, "latent_dim": 2, "hidden": [16, 8], "activation": "ptanh", "decoder": "gaussian"}
    assert _states_equal(model.state_dict(), rebuilt.state_dict())
    x = torch.randn(5, 3)
    assert torch.equal(model.encode(x)[0], rebuilt.encode(x)[0])


@pytest.mark.parametrize("build", [
    lambda: vaelib.Autoencoder(4, latent_dim=3, hidden=(8,), activation="elu"),
    lambda: vaelib.VAE(64, hidden=(32,), decoder="bernoulli"),
    lambda: vaelib.TiedAutoencoder(5, hidden=(4, 3)),
    lambda: vaelib.DenoisingAutoencoder(6, hidden=(4,), noise_std=0.2),
    lambda: vaelib.SparseAutoencoder(6, code_dim=9),
    lambda: vaelib.ConvAutoencoder(),
])
def test_every_library_model_survives_save_and_load_model(tmp_path, build):
    torch.manual_seed(0)
    model = build()
    rebuilt = load_model(save_checkpoint(tmp_path / "m.ckpt", model))
    assert type(rebuilt) is type(model) and rebuilt.init_args == json.loads(json.dumps(model.init_args))
    assert _states_equal(model.state_dict(), rebuilt.state_dict())


def test_tied_weights_stay_tied_after_loading(tmp_path):
    model = vaelib.TiedAutoencoder(5, hidden=(4,))
    rebuilt = load_model(save_checkpoint(tmp_path / "t.ckpt", model))
    assert rebuilt.decoder[0].weight is rebuilt.encoder[2].weight


def test_a_model_without_recorded_arguments_is_restored_but_not_rebuilt(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = save_checkpoint(tmp_path / "plain.ckpt", net)
    with pytest.raises(CheckpointError, match=r"plain\.ckpt does not record how to build its Sequential model"):
        load_model(path)
    other = torch.nn.Sequential(torch.nn.Linear(3, 2))
    load_checkpoint(path).restore(other)
    assert _states_equal(net.state_dict(), other.state_dict())


def test_restore_checks_classes_and_rolls_back_on_a_shape_mismatch(saved):
    path, _, _, _ = saved
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"run\.ckpt holds the model state of class VAE, "
                                              r"but the model given is of class Autoencoder"):
        ckpt.restore(vaelib.Autoencoder(3))
    with pytest.raises(CheckpointError, match=r"run\.ckpt holds the objective state of class KoLagrangian, "
                                              r"but the objective given is of class ELBO"):
        ckpt.restore(vaelib.VAE(3, hidden=(16, 8)), vaelib.ELBO())
    wrong = vaelib.VAE(3, hidden=(16, 4))
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"run\.ckpt does not fit the given model: .*size mismatch"):
        ckpt.restore(wrong)
    assert _states_equal(before, wrong.state_dict())
    model = vaelib.VAE(3, hidden=(16, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="holds the optimizer state of class Adam, "
                                              "but the optimizer given is of class SGD"):
        ckpt.restore(model, vaelib.KoLagrangian(), sgd)
    too_few = torch.optim.Adam(model.parameters(), lr=0.1)  # without the objective's alpha
    with pytest.raises(CheckpointError, match="does not fit the given optimizer"):
        ckpt.restore(model, vaelib.KoLagrangian(), too_few)
    assert _states_equal(before, model.state_dict())  # the model loaded first was rolled back


def test_restore_asks_for_parts_the_file_does_not_hold(tmp_path):
    path = save_checkpoint(tmp_path / "model-only.ckpt", vaelib.VAE(3))
    with pytest.raises(CheckpointError, match=r"model-only\.ckpt holds no objective state"):
        load_checkpoint(path).restore(vaelib.VAE(3), vaelib.ELBO())


# ---------------------------------------------------------------------------------------------- atomic writes

def _fail(*args, **kwargs):
    raise OSError("simulated crash")


@pytest.mark.parametrize("target", ["os.replace", "os.fsync", "safetensors.torch.save"])
def test_a_failed_write_leaves_the_previous_checkpoint_intact(saved, monkeypatch, target):
    path, model, _, _ = saved
    before = path.read_bytes()
    with torch.no_grad():
        model.encoder[0].weight.add_(1.0)  # the new save would differ from the old one
    module, _, name = target.rpartition(".")
    monkeypatch.setattr({"os": os, "safetensors.torch": safetensors.torch}[module], name, _fail)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).history == {"loss": [2.0, 1.5]}
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_a_crash_that_leaves_a_partial_temporary_file_does_not_touch_the_checkpoint(saved):
    path, model, _, _ = saved
    partial = path.parent / f".{path.name}.abc.tmp"
    partial.write_bytes(path.read_bytes()[:100])  # what a killed process would leave
    assert load_checkpoint(path).history == {"loss": [2.0, 1.5]}
    save_checkpoint(path, model)  # the next save still works
    assert load_checkpoint(path).history == {}


def test_save_replaces_the_old_file_in_one_step(saved, monkeypatch):
    path, model, _, _ = saved
    calls = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append((Path(src), Path(dst))), real_replace(src, dst)))
    save_checkpoint(path, model, history={"loss": [1.0]})
    assert len(calls) == 1 and calls[0][1] == path and calls[0][0].parent == path.parent
    assert load_checkpoint(path).history == {"loss": [1.0]}


# ---------------------------------------------------------------------------------------------- damaged files

def _header(data: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8:8 + n])


def _with_header(data: bytes, edit) -> bytes:
    """The file with its JSON header edited by ``edit`` (and re-padded to the same length)."""
    n, header = _header(data)
    edit(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    assert len(raw) <= n, "the edit must not lengthen the header"
    return data[:8] + raw.ljust(n) + data[8 + n:]


def _edit_meta(key, value):
    def edit(header):
        meta = json.loads(header["__metadata__"]["meta"])
        meta[key] = value
        header["__metadata__"]["meta"] = json.dumps(meta, sort_keys=True)
    return edit


def _flip(offset_from_end):
    def damage(data):
        i = len(data) - offset_from_end
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    return damage


CORRUPTIONS = [
    ("empty file", lambda d: b"", r"is truncated or not a checkpoint: it holds only 0 bytes"),
    ("first 5 bytes", lambda d: d[:5], r"is truncated or not a checkpoint: it holds only 5 bytes"),
    ("cut in the header", lambda d: d[:200], r"is truncated or not a checkpoint: its header promises \d+ bytes"),
    ("cut in the tensors", lambda d: d[:-100], r"is corrupted or truncated: safetensors cannot read it"),
    ("one byte short", lambda d: d[:-1], r"is corrupted or truncated: safetensors cannot read it"),
    ("bytes appended", lambda d: d + b"garbage", r"is corrupted or truncated: safetensors cannot read it"),
    ("bit flipped in a tensor", _flip(10), r"is corrupted or was edited: its content does not match the sha256"),
    ("bit flipped in the header JSON", lambda d: d[:9] + b"\x00" + d[10:],
     r"is corrupted or not a checkpoint: its header is not valid JSON"),
    ("history edited", lambda d: _with_header(d, _edit_meta("history", {"loss": [0.0, 0.0]})),
     r"is corrupted or was edited: its content does not match the sha256"),
    ("model class edited", lambda d: _with_header(d, _edit_meta("model", {"class": "Autoencoder", "init_args": None,
                                                                       "other_state": {}})),
     r"is corrupted or was edited"),
    ("digest edited", lambda d: _with_header(d, lambda h: h["__metadata__"].update(sha256="0" * 64)),
     r"is corrupted or was edited"),
    ("format edited", lambda d: _with_header(d, lambda h: h["__metadata__"].update(format="other")),
     r"is not a vaelib checkpoint: its metadata has format 'other'"),
    ("future version", lambda d: _with_header(d, lambda h: h["__metadata__"].update(version="2")),
     r"has checkpoint format version '2'; this vaelib reads version 1"),
    ("metadata removed", lambda d: _with_header(d, lambda h: h.pop("__metadata__")),
     r"is not a vaelib checkpoint: its metadata has format None"),
    ("a plain safetensors file", lambda d: safetensors.torch.save({"w": torch.zeros(2)}),
     r"is not a vaelib checkpoint"),
    ("a pickle (torch.save) file", None, r"is truncated or not a checkpoint|is corrupted or not a checkpoint"),
    ("a text file", lambda d: b"hello, this is not a checkpoint\n", r"is truncated or not a checkpoint"),
]


@pytest.mark.parametrize("name, damage, message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_damaged_file_gives_a_clear_error_naming_it(saved, name, damage, message):
    path = saved[0]
    if damage is None:
        torch.save({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + " " + message):
        load_checkpoint(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"no checkpoint file at {tmp_path / 'nope.ckpt'}")):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_loading_never_unpickles(saved, monkeypatch):
    """A checkpoint is read with safetensors and json only: pickle is never consulted."""
    import pickle

    monkeypatch.setattr(pickle, "loads", _fail)
    monkeypatch.setattr(pickle, "load", _fail)
    monkeypatch.setattr(torch, "load", _fail)
    load_model(saved[0])


def test_the_library_never_uses_pickle_or_an_unsafe_torch_load():
    sources = Path(vaelib.__file__).parent.rglob("*.py")
    for source in sources:
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), source
        for call in re.finditer(r"(?<![\w.])torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{source}: {call.group(0)}"


# ---------------------------------------------------------------------------------------------- bad arguments

def test_save_checkpoint_rejects_bad_arguments(tmp_path):
    model = vaelib.VAE(3)
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike, got int \(3\)"):
        save_checkpoint(3, model)
    with pytest.raises(FileNotFoundError, match=r"the folder .*missing does not exist"):
        save_checkpoint(tmp_path / "missing" / "a.ckpt", model)
    with pytest.raises(IsADirectoryError, match="it is a folder; give a file name"):
        save_checkpoint(tmp_path, model)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        save_checkpoint(tmp_path / "a.ckpt", "model")
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer or None, got str"):
        save_checkpoint(tmp_path / "a.ckpt", model, optimizer="adam")
    with pytest.raises(TypeError, match="history must be a vaelib.History, a dict of lists or None, got list"):
        save_checkpoint(tmp_path / "a.ckpt", model, history=[1.0])
    with pytest.raises(ValueError, match="checkpoint metadata holds NaN or an infinite number"):
        save_checkpoint(tmp_path / "a.ckpt", model, history={"loss": [float("nan")]})
    with pytest.raises(TypeError, match=r"fit_settings\['device'\] = device\(type='cpu'\) .* cannot be stored"):
        save_checkpoint(tmp_path / "a.ckpt", model, fit_settings={"device": torch.device("cpu")})
    assert not list(tmp_path.iterdir())


def test_register_model_refuses_ambiguous_classes():
    with pytest.raises(ValueError, match="another model class named 'VAE' is already registered"):
        register_model(type("VAE", (torch.nn.Module,), {}))

    class Star(torch.nn.Module):
        def __init__(self, *sizes):
            super().__init__()

    with pytest.raises(TypeError, match=r"Star.__init__ takes \*args or \*\*kwargs"):
        register_model(Star)


def test_a_subclass_records_its_own_arguments_not_its_parents():
    model = vaelib.DenoisingAutoencoder(6, hidden=(4,), noise_std=0.3)
    assert model.init_args["noise_std"] == 0.3 and model.init_args["in_dim"] == 6


# ---------------------------------------------------------------------------------------------- forged files

def _reseal(path: Path, edit_meta=None, edit_tensors=None) -> None:
    """Rewrite a vaelib file with edited metadata or tensors and a recomputed sha256: what a forger (or
    a buggy writer) produces. The digest then passes, so only validation can catch the edit."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {name: f.get_tensor(name) for name in f.keys()}
    meta = metadata["meta"] if edit_meta is None else edit_meta(metadata["meta"])
    if edit_tensors is not None:
        edit_tensors(tensors)
    metadata = {**metadata, "meta": meta, "sha256": ck._digest(meta, tensors)}
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def _json_edit(edit):
    def apply(text):
        meta = json.loads(text)
        edit(meta)
        return json.dumps(meta)
    return apply


def _rename_optimizer_tensor(tensors):
    name = next(n for n in tensors if n.startswith("optimizer."))
    tensors["optimizer.x." + name.split(".", 2)[2]] = tensors.pop(name)


FORGERIES = [
    ("meta is not JSON", dict(edit_meta=lambda s: "{not json"), "is not a valid vaelib file: its description is not "
                                                               "valid JSON"),
    ("meta is a list", dict(edit_meta=lambda s: "[]"), "is not a valid checkpoint: its description is list, expected "
                                                      "dict"),
    ("history missing", dict(edit_meta=_json_edit(lambda m: m.pop("history"))), "its description lacks history"),
    ("model is a number", dict(edit_meta=_json_edit(lambda m: m.update(model=5))), "model is int, expected dict"),
    ("class is a number", dict(edit_meta=_json_edit(lambda m: m["model"].update({"class": 5}))),
     "model.class is int, expected str"),
    ("history holds text", dict(edit_meta=_json_edit(lambda m: m.update(history={"loss": ["x"]}))),
     "an entry of history['loss'] is str, expected int or float"),
    ("history lengths differ", dict(edit_meta=_json_edit(lambda m: m.update(history={"a": [1.0], "b": []}))),
     "its history's terms have different lengths [0, 1]"),
    ("optimizer index not a number", dict(edit_meta=_json_edit(
        lambda m: m["optimizer"].update(other_state={"x": {}}))), "optimizer.other_state has the key 'x'"),
    ("nested 100000 deep", dict(edit_meta=lambda s: s[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "its description is not valid JSON (maximum recursion depth exceeded"),
    ("nested 200 deep", dict(edit_meta=lambda s: s[:-1] + ', "x": ' + "[" * 200 + "]" * 200 + "}"),
     "its description nests more than 64 levels deep"),
    ("optimizer tensor name", dict(edit_tensors=_rename_optimizer_tensor),
     "holds the tensor 'optimizer.x.exp_avg', which is not named optimizer.<parameter index>.<key>"),
    ("unknown tensor group", dict(edit_tensors=lambda t: t.update(extra=torch.zeros(1))),
     "holds a tensor named 'extra', which is none of model.<key>"),
    ("random state of floats", dict(edit_tensors=lambda t: t.update({"rng.torch": torch.zeros(3)})),
     "its random state 'torch' is a torch.float32 tensor of shape (3,), not a generator state"),
]


@pytest.mark.parametrize("edits, message", [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES])
def test_forged_metadata_with_a_valid_digest_gives_a_checkpoint_error(saved, edits, message):
    path = saved[0]
    _reseal(path, **edits)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_a_wrong_optimizer_state_is_a_checkpoint_error_and_rolls_back(saved):
    path, _, _, _ = saved
    _reseal(path, edit_meta=_json_edit(lambda m: m["optimizer"]["param_groups"][0].update(params="abc")))
    with pytest.raises(CheckpointError, match="optimizer.param_groups\\[0\\].params is str, expected list"):
        load_checkpoint(path)


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.mkdir()], ids=["FIFO", "folder"])
def test_a_path_that_is_not_a_regular_file_is_not_read(tmp_path, make):
    path = tmp_path / "run.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + " is (not a regular file|a folder)"):
        load_checkpoint(path)  # a FIFO would block a plain open()


def test_a_large_file_that_is_not_a_checkpoint_is_rejected_without_being_read(tmp_path):
    import tracemalloc

    for name, head in (("video.mp4", b"\x00\x00\x00\x20ftypisom"), ("header-fits.bin", struct.pack("<Q", 2) + b"{}")):
        path = tmp_path / name
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(300_000_000)  # sparse: costs no disk
        tracemalloc.start()
        with pytest.raises(CheckpointError, match="truncated or not a checkpoint|is not a vaelib checkpoint"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1_000_000, f"{name}: {peak} bytes allocated to reject it"


def test_a_checkpoint_without_a_fingerprint_still_resumes_and_checks_what_it_records(tmp_path, cosine_small):
    """Files written before fingerprints existed hold only fit's settings: those are still compared."""
    path = tmp_path / "old.ckpt"
    settings = dict(batch_size=128, lr=3e-3, seed=7, progress=False)
    vaelib.seed_everything(0)
    vaelib.fit(vaelib.VAE(3, hidden=(8,)), vaelib.ELBO(), cosine_small, epochs=1, checkpoint=path, **settings)
    _reseal(path, edit_meta=_json_edit(lambda m: m.pop("fingerprint")))
    assert load_checkpoint(path).fingerprint is None
    with pytest.raises(CheckpointError, match="was saved by another setup: batch_size was 128, now 64"):
        vaelib.fit(vaelib.VAE(3, hidden=(8,)), vaelib.ELBO(), cosine_small, epochs=2, resume_from=path,
                   **{**settings, "batch_size": 64})
    history = vaelib.fit(vaelib.VAE(3, hidden=(8,)), vaelib.ELBO(), cosine_small, epochs=2, resume_from=path,
                         **settings)
    assert len(history) == 2


# ---------------------------------------------------------------------------------------------- training states

def test_a_training_state_round_trips_nested_tensors_tuples_and_int_keys(tmp_path):
    state = {"trainer": {"theta": torch.arange(6.0).reshape(2, 3), "steps": 4,
                         "optimizer": {"state": {0: {"step": torch.tensor(3.0)}, 10: {}},
                                       "param_groups": [{"betas": (0.9, 0.999), "params": [0, 10], "fused": None}]}},
             "generators": {"order": [torch.Generator().manual_seed(1).get_state()]}, "histories": [{"loss": [1.5]}]}
    path = ck.save_state(tmp_path / "s.state", state, content="test")
    loaded = ck.load_state(path, content="test")
    assert loaded["trainer"]["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(loaded["trainer"]["optimizer"]["state"]) == {0, 10}
    assert torch.equal(loaded["trainer"]["theta"], state["trainer"]["theta"])
    assert torch.equal(loaded["generators"]["order"][0], state["generators"]["order"][0])
    assert loaded["histories"] == [{"loss": [1.5]}] and loaded["trainer"]["steps"] == 4
    with pytest.raises(CheckpointError, match=r"s\.state holds the training state of 'test', not of 'fit_batched'"):
        ck.load_state(path, content="fit_batched")
    with pytest.raises(CheckpointError, match=r"s\.state is a training state .*, not a checkpoint of one model"):
        load_checkpoint(path)
    with pytest.raises(TypeError, match="use all-str or all-int keys"):
        ck.save_state(tmp_path / "bad.state", {"x": {1: 2, "a": 3}}, content="test")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["state"].update(x={"__tensor__": "missing"}),
     "names the tensor 'missing', which the file does not hold"),
    (lambda m: m["state"].update(x={"__tensor__": "w"}),
     "names the tensor 'w', which the file does not hold (or names it twice)"),
    (lambda m: m["state"].update(x={"__int_keys__": {"a": 1}}), "is a dict with int keys whose keys are not all ints"),
    (lambda m: m["state"].pop("w"), "it holds tensors its description does not mention (w)"),
    (lambda m: m.update(content=None), "holds the training state of None, not of 'test'"),
])
def test_a_forged_training_state_is_a_checkpoint_error(tmp_path, edit, message):
    path = ck.save_state(tmp_path / "s.state", {"w": torch.ones(2)}, content="test")
    _reseal(path, edit_meta=_json_edit(edit))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        ck.load_state(path, content="test")


def test_a_checkpoint_whose_model_arguments_describe_a_huge_model_is_refused_before_allocating(saved):
    """load_model counts the stored arguments' model on the meta device first: a forged (or
    mistaken) latent size of 10^9 is a one-line TooLarge naming the file, not an allocation."""
    from vaelib import limits
    from vaelib.models import load_model

    path = saved[0]
    _reseal(path, edit_meta=_json_edit(lambda m: m["model"]["init_args"].update(latent_dim=10**9)))
    with pytest.raises(limits.TooLarge, match="model .* needs about .* of memory") as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
