"""The files the train, sample and evaluate commands write and read beside a checkpoint.

A run's checkpoint ``run.ckpt`` has two companions: ``run.history.csv`` (one row per epoch) and
``run.settings.json`` (the settings that built and trained it, which ``train --resume`` and
``evaluate`` read). Every file is written through ``vaelib._io`` (a temporary name in its folder,
then renamed), so that an interrupted command never leaves half a file.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from typing import TYPE_CHECKING

from vaelib._io import check_writable, write_file

if TYPE_CHECKING:  # numpy is imported where it is used: a command's --help needs none of it
    import numpy as np

SETTINGS_FORMAT = "vaelib-train-settings"
ARRAY_SUFFIXES = (".npy", ".csv")


def history_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".history.csv")


def settings_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".settings.json")


def write_json(path: Path, value) -> None:
    write_file(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def write_table(path: Path, rows: list[dict]) -> None:
    """Rows of numbers as a CSV file with a header (the union of the rows' keys, in first-seen
    order); a value a row lacks is left empty."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_file(path, text.getvalue())


def read_table(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """The columns and rows of a CSV file written by ``write_table``, numbers as floats (empty
    cells left out)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [{key: float(value) for key, value in row.items() if value} for row in reader]
        return list(reader.fieldnames or []), rows


def write_array(path: Path, array: np.ndarray) -> None:
    """An (n, d) array as ``.npy`` or as ``.csv`` (no header, 9 significant digits: float32 exactly)."""
    import numpy as np

    buffer = io.BytesIO()
    if path.suffix == ".npy":
        np.save(buffer, array, allow_pickle=False)
    elif path.suffix == ".csv":
        np.savetxt(buffer, array, fmt="%.9g", delimiter=",")
    else:
        raise ValueError(f"{path}: cannot write this file type; use one of {', '.join(ARRAY_SUFFIXES)}")
    write_file(path, buffer.getvalue())


def read_settings(checkpoint: Path) -> dict | None:
    """The settings recorded beside ``checkpoint`` by ``train``, or None when there are none."""
    path = settings_path(checkpoint)
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a settings file written by vaelib train ({exc}); move it away") from exc
    if not isinstance(settings, dict) or settings.get("format") != SETTINGS_FORMAT:
        raise ValueError(f"{path} is not a settings file written by vaelib train; move it away")
    return settings


def output_file(path_text: str, flag: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """A path that a command may write to, given with ``flag``: (when ``suffixes`` are given) its
    name ends in one of them, and ``vaelib._io.check_writable`` accepts it. Raises an error that
    says which check fails."""
    if suffixes is not None and Path(path_text).suffix not in suffixes:
        raise ValueError(f"{flag} {path_text!r} must end in {' or '.join(suffixes)}")
    return check_writable(path_text, argument=flag)
