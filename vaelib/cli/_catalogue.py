"""What the commands' ``--help`` lists, without importing torch: a snapshot of vaelib's own values.

Why: ``python -m vaelib train --help`` shows the objectives, optimisers and models by name and the
training defaults; ``reproduce --help`` shows ``Ko2023Config``'s defaults. They are defined in
modules that import torch (about a second to start), and a ``--help`` should answer at once. So the
parsers read them from ``catalogue.json`` beside this file, which ``live()`` computes from the
defining modules themselves; tests/test_cli.py fails, naming the command that rewrites it, when
the two differ:

    python -m vaelib.cli._catalogue        # rewrite catalogue.json from vaelib's current values

The file is a derived copy, never edited by hand; the values are defined once, where they were.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("catalogue.json")
# The fields of Ko2023Config that ``reproduce`` offers as flags.
KO2023_FLAGS = ("runs", "epochs", "seed", "runner", "batch_size", "lr", "n_points", "alpha_rule", "kl_reduction")


@functools.cache
def catalogue() -> dict[str, Any]:
    """The snapshot (read once per process)."""
    loaded: dict[str, Any] = json.loads(PATH.read_text())
    return loaded


def live() -> dict[str, Any]:
    """The same values computed from the modules that define them (imports torch)."""
    from vaelib.cli._train_settings import tabular_models
    from vaelib.experiments.ko2023 import RUNNERS, Ko2023Config
    from vaelib.objectives import ALPHA_RULES, KL_REDUCTIONS, OBJECTIVES
    from vaelib.runs import OPTIMIZERS, TrainingSettings
    from vaelib.train import LR_SCHEDULES

    training, ko2023 = TrainingSettings(), Ko2023Config()
    return {"objectives": list(OBJECTIVES), "optimizers": sorted(OPTIMIZERS),
            "tabular_models": sorted(name for name, cls in tabular_models().items()  # vaelib's, not a user's
                                     if cls.__module__.startswith("vaelib.")),
            "training": {name: getattr(training, name) for name in ("epochs", "batch_size", "lr", "optimizer")},
            "ko2023": {name: getattr(ko2023, name) for name in KO2023_FLAGS}, "runners": sorted(RUNNERS),
            "alpha_rules": list(ALPHA_RULES), "kl_reductions": list(KL_REDUCTIONS), "lr_schedules": list(LR_SCHEDULES)}


def write() -> None:
    """Rewrite ``catalogue.json`` from ``live()``."""
    from vaelib._io import write_file

    write_file(PATH, (json.dumps(live(), indent=1) + "\n").encode())


if __name__ == "__main__":
    write()
    print(f"wrote {PATH}")
