"""The contract between the engine's Python side and its C kernel comes from one source, _layout.py.

kernel.c defines none of the names both sides must agree on (the per-run settings' order, a step's
columns, a layer's fields, the activation and optimiser codes, the limits, the multiplier state,
Adam's constants): ``_layout.kernel_defines`` hands them to the compiler as -D flags. These tests
check, by name, that the two sides use the same names, that a name missing on the Python side
stops the build naming it, and that the generated constants are the ones PyTorch's Adam uses.
"""
from __future__ import annotations

import inspect
import re
import subprocess

import numpy as np
import pytest

from vaelib import objectives
from vaelib.engine import _build, _kernel, _layout

CONTRACT_NAME = re.compile(r"\b(?:(?:S|STEP|LAYER|ACT|OPT|DECODER|MULTIPLIER|ADAM|N)_[A-Z0-9_]+|MAX_LAYERS|MAX_PIECES)\b")


def _defined() -> dict[str, str]:
    return dict(flag[2:].split("=", 1) for flag in _layout.kernel_defines())


def _code_without_comments() -> str:
    source = _kernel.SOURCE.read_text()
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", source, flags=re.DOTALL)


def test_kernel_c_uses_exactly_the_names_layout_defines():
    used = set(CONTRACT_NAME.findall(_code_without_comments())) - {"MAX_THREADS"}
    defined = set(_defined())
    assert used - defined == set(), f"kernel.c uses names _layout.py does not define: {sorted(used - defined)}"
    assert defined - used == set(), f"_layout.py defines names kernel.c never uses: {sorted(defined - used)}"


def test_every_setting_column_field_and_code_has_its_name():
    defined = _defined()
    assert [defined[f"S_{name.upper()}"] for name in _layout.SETTINGS] == [str(i) for i in range(len(_layout.SETTINGS))]
    assert defined["N_SETTINGS"] == str(len(_layout.SETTINGS))
    assert {name: defined[f"ACT_{name.upper()}"] for name in _layout.ACTIVATIONS} == {
        name: str(code) for name, code in _layout.ACTIVATION_CODES.items()}
    assert set(_layout.ACTIVATION_KINDS.values()) == set(_layout.ACTIVATIONS)
    assert defined["MAX_LAYERS"] == str(_layout.LIMITS["layers"])
    assert defined["MAX_PIECES"] == str(_layout.LIMITS["pieces"])
    assert all(flag in _kernel.FLAGS for flag in _layout.kernel_defines())  # part of the build's cache key


def test_adams_constants_are_pytorchs_rounded_to_float32():
    defined = _defined()
    beta1, beta2 = _layout.ADAM_BETAS
    for name, value in (("ADAM_AVERAGE_WEIGHT", 1 - beta1), ("ADAM_BETA2", beta2),
                        ("ADAM_SQUARE_WEIGHT", 1 - beta2), ("ADAM_EPS", _layout.ADAM_EPS)):
        literal = defined[name]
        assert literal.endswith("f")
        assert np.float32(float.fromhex(literal[:-1])) == np.float32(value), name
    # the literals the kernel used before they were generated: the same float32 numbers
    assert [np.float32(float.fromhex(defined[n][:-1])) for n in ("ADAM_AVERAGE_WEIGHT", "ADAM_BETA2",
                                                                "ADAM_SQUARE_WEIGHT", "ADAM_EPS")] == \
        [np.float32(0.1), np.float32(0.999), np.float32(0.001), np.float32(1e-8)]


def test_the_layout_knows_no_objective_by_name():
    source = inspect.getsource(_layout)
    names = {cls.__name__ for cls in objectives.OBJECTIVES.values()} | {"ConstrainedObjective", "constraint_average",
                                                                       "alpha_rule"}
    assert not [name for name in names if re.search(rf"\b{name}\b", source)]


@pytest.mark.skipif(_build.compiler_command() is None, reason="no C compiler")
def test_a_name_missing_from_the_layout_stops_the_build_naming_it(tmp_path):
    flags = [flag for flag in _kernel.FLAGS if not flag.startswith("-DS_BOUND=")]
    command = [*_build.compiler_command(), *flags, "-fsyntax-only", str(_kernel.SOURCE)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "S_BOUND" in done.stderr
    without_contract = [flag for flag in _kernel.FLAGS if not flag.startswith("-D")]
    done = subprocess.run([*_build.compiler_command(), *without_contract, "-fsyntax-only", str(_kernel.SOURCE)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "takes its contract from vaelib/engine/_layout.py" in done.stderr
