"""The code passes its linter and its type check, as pyproject.toml configures them.

* ruff (``[tool.ruff]``): pyflakes (unused and undefined names), pycodestyle's errors and warnings,
  bugbear's likely bugs and pyupgrade's Python 3.11 spellings, on vaelib, the tests, the
  benchmarks and tasks.py (not the notebooks); nothing is reformatted.
* mypy (``[tool.mypy]``) on vaelib: strict for the run rules and the trainers' plumbing
  (``vaelib.runs``, ``vaelib.train``, ``vaelib.engine``, ``vaelib.sweep``, ``vaelib.metrics``, the
  train command's settings), mypy's default checks elsewhere: an annotation, once written, is
  checked; unannotated code is not.

A failure prints the tool's own report: the file, the line and the rule.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    if "No module named" in done.stderr:
        pytest.fail(f"{command[0]} is not installed in {sys.prefix}; pip install -r requirements.txt")
    return done


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", "vaelib", "tests", "benchmarks", "tasks.py")
    assert done.returncode == 0, f"ruff check (configured in pyproject.toml) found:\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing():
    done = _run("mypy")
    assert done.returncode == 0, f"mypy (configured in pyproject.toml) found:\n{done.stdout}{done.stderr}"
