"""A user's own data files, read so that no file can make vaelib allocate more than it holds.

``load_table(path, columns=None, drop=None, label=None, header="auto")`` reads a data file into a
``Table``: ``x``, a float32 tensor of shape (n, d), one row per point; ``labels``, the label
column's values (a NumPy array: int64 or float64 where every label is a number, else text) or
None; ``names``, the names of x's columns from a header, or None. ``load_array(path, ...)`` returns
``x`` alone. The reader follows the file's name:

* ``.csv`` (comma-separated) and ``.tsv`` (tab-separated) text, one point per line;
* ``.npy`` (NumPy's format; never unpickled), ``.npz`` (NumPy's archive of ``.npy`` files: the data
  is its one array, or the array named ``x``; ``label`` may name another array of it);
* IDX, the format of the original MNIST files (a ``.idx`` suffix or MNIST's ``*-ubyte`` names),
  either optionally gzip-compressed (``.gz``).

An array with more than two dimensions (images) is flattened to one row per item. Values are kept
as stored, not rescaled (divide 8-bit images by 255 yourself).

Columns. ``columns`` keeps only these columns, in this order; ``drop`` leaves these out; ``label``
takes one column out as the labels (it may hold text). Each is given by name (a header's) or by
position (0-based, as an int). Columns of a text file that are not selected are never parsed: a
text column may stay in the file when it is dropped or the label.

Headers (text files). With ``header="auto"`` the first line is a header when one of its fields is
text that is not a number (``x,y,z``), or when its fields are 0, 1, ..., d-1: the names pandas
gives a DataFrame's columns (``DataFrame.to_csv`` of an unnamed frame writes ``0,1,2``), with
three columns or more (a first row of data may well read ``0,1``) and unless the second line goes
on counting (``3,4,5``: the data are a count). A header
whose first field is empty (or ``Unnamed: 0``) marks pandas' index column: it is left out and not
counted by positions. ``header=True`` or ``False`` says it outright.

Bounded. Everything is checked before it is allocated: a binary file's header against the
file's real size (a ``.npy`` or IDX header claiming 10^12 rows in a 152-byte file is refused
after reading the header); a compressed file is decompressed only up to the size its header
declares, and a truncated one is an error; what a header declares is compared with the memory this
machine has (``vaelib.limits``). Text is read in chunks of lines straight into a preallocated
float32 array, so that the peak memory is the result plus a few megabytes (not the Python lists of
every row). Only regular files are opened (``vaelib._io.open_regular``): a FIFO, device or folder is
refused before it is read.

Errors are ``DataFileError`` (a ``ValueError``), one line that names the file and, for text, the
line and column; ``FileNotFoundError`` when there is no file.
"""
from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

import numpy as np
import torch

from vaelib import _io, limits

DATA_FILE_TYPES = ".npy, .npz, .csv, .tsv, or IDX (.idx or MNIST's *-ubyte names, either optionally .gz)"
CHUNK_LINES = 2**14  # lines of text parsed at once: a few megabytes of text for a wide file
_NPY_MAGIC = b"\x93NUMPY"
_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
                               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_INDEX_NAMES = ("", "Unnamed: 0")
Column = str | int


class DataFileError(ValueError):
    """A data file that cannot be read as data: the message names the file and what is wrong."""


class Table(NamedTuple):
    """A data file's content: ``x`` (float32, (n, d)), ``labels`` (a NumPy array of n labels, or
    None) and ``names`` (x's column names from a header, or None)."""

    x: torch.Tensor
    labels: np.ndarray | None
    names: list[str] | None


def load_table(path: str | os.PathLike[str], *, columns: Sequence[Column] | None = None,
               drop: Sequence[Column] | None = None, label: Column | None = None,
               header: bool | str = "auto") -> Table:
    """A user's data file as a ``Table`` (see the module's docstring): x as float32 (n, d), finite.

    Raises ``DataFileError`` naming the file and what is wrong (an unsupported type, a header whose
    size the file does not hold, text that is not a number, a NaN, an unknown column),
    ``FileNotFoundError`` when there is no file, and ``vaelib.limits.TooLarge`` when the data would
    not fit in memory."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    selection = _Selection(columns, drop, label)
    path = Path(path)
    kind = file_kind(path)
    if kind in ("csv", "tsv"):
        table = _read_delimited(path, "," if kind == "csv" else "\t", selection, header)
    else:
        if header is True:
            raise DataFileError(f"{path}: a {kind} file has no header; header=True applies to .csv and .tsv files")
        if kind == "npz":
            array, labels = _read_npz(path, selection)
        else:
            array, labels = (read_npy(path) if kind == "npy" else read_idx(path)), None
        table = _select_from_array(path, array, labels, selection)
    _check_finite(path, table.x)
    return table


def load_array(path: str | os.PathLike[str], *, columns: Sequence[Column] | None = None,
               drop: Sequence[Column] | None = None, label: Column | None = None,
               header: bool | str = "auto") -> torch.Tensor:
    """A user's data file as a float32 tensor of shape (n, d): ``load_table(...).x`` (see
    ``load_table`` and the module's docstring). The chapter "Run it on your data" uses it through
    ``python -m vaelib train``."""
    return load_table(path, columns=columns, drop=drop, label=label, header=header).x


def file_kind(path: Path) -> str:
    """"csv", "tsv", "npy", "npz" or "idx", from the file's name; ``DataFileError`` for another."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if path.name.endswith(".gz") and (name.endswith("-ubyte") or suffix == ".idx"):
        return "idx"
    if path.suffix.lower() in (".csv", ".tsv", ".npy", ".npz"):
        return path.suffix.lower()[1:]
    if name.endswith("-ubyte") or suffix == ".idx":
        return "idx"
    raise DataFileError(f"{path}: unsupported file type; use {DATA_FILE_TYPES}")


# ----------------------------------------------------------------------------------------------
# Binary files: .npy, .npz, IDX


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The numeric array stored in a ``.npy`` file, as stored (never unpickled), after checking its
    header against the file's size and the memory available. Raises ``DataFileError`` when the file
    is not a ``.npy`` file, holds no numbers (Python objects, strings, complex numbers) or holds
    another number of bytes than its header declares."""
    with _io.open_regular(path, "a data file") as f:
        shape, dtype, fortran = _npy_header(f, path)
        return _read_npy_body(f, path, shape, dtype, fortran, _io.file_size(f) - f.tell())


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the format of the original MNIST files), plain or gzip-compressed.

    Returns the array with its stored dtype and shape, e.g. (60000, 28, 28) uint8 for
    ``train-images-idx3-ubyte``. Scale and flatten it yourself:
    ``torch.as_tensor(a.reshape(len(a), -1) / 255.0, dtype=torch.float32)``. The header's shape is
    compared with the file's size before the data are read (for a ``.gz`` file, at most the declared
    bytes are decompressed), and with the memory available."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_idx: path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"read_idx: no file at {path}")
    compressed = path.name.endswith(".gz")
    with _io.open_regular(path, "an IDX file") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        try:
            head = _read_up_to(stream, 4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataFileError(f"{path} is not an IDX file (bad magic number {head.hex()}); expected 0x0000 "
                                    "followed by a type code and the number of dimensions")
            dtype, ndim = np.dtype(_IDX_DTYPES[head[2]]), head[3]
            dims = _read_up_to(stream, 4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataFileError(f"{path} is truncated inside its header")
            shape = struct.unpack(f">{ndim}I", dims)
            held = None if compressed else _io.file_size(raw) - 4 - 4 * ndim
            array = _read_declared(stream, path, shape, dtype, held)
            if compressed and _read_up_to(stream, 1):
                raise DataFileError(f"{path} decompresses to more than the {array.nbytes} data bytes its header promises "
                                    f"for shape {shape}; the file is corrupt")
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataFileError(f"{path} is not a complete gzip file ({' '.join(str(exc).split())}); it is "
                                "truncated or corrupt: download or write it again") from None
    return _native(array).reshape(shape)


def _read_npz(path: Path, selection: _Selection) -> tuple[np.ndarray, np.ndarray | None]:
    """The data array of a ``.npz`` archive and, when ``label`` names another of its arrays, that one."""
    with _io.open_regular(path, "a data file") as raw:
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataFileError(f"{path} is not a .npz file (not a zip archive: {exc}); save arrays with "
                                "numpy.savez") from None
        with archive:
            members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
            if not members:
                raise DataFileError(f"{path} holds no arrays (.npy members); save arrays with numpy.savez")
            label_array = selection.label if isinstance(selection.label, str) and selection.label in members else None
            candidates = [name for name in members if name != label_array]
            name = candidates[0] if len(candidates) == 1 else "x" if "x" in candidates else None
            if name is None:
                raise DataFileError(f"{path} holds the arrays {sorted(members)}: name the data array x (or save only "
                                    "the data, and the labels as the label array)")
            data = _read_npz_member(path, archive, members[name])
            if label_array is None:
                return data, None
            labels = _read_npz_member(path, archive, members[label_array])
            selection.label = None  # taken here, not from a column
            if labels.ndim != 1 or len(labels) != len(data):
                raise DataFileError(f"{path}: the label array {label_array!r} has shape {labels.shape}; it needs one "
                                    f"label per row of {name!r} ({len(data)})")
            return data, labels


def _read_npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    where = f"{path} (array {info.filename[:-4]!r})"
    try:
        with archive.open(info) as member:
            shape, dtype, fortran = _npy_header(member, where)
            header_bytes = member.tell()
            return _read_npy_body(member, where, shape, dtype, fortran, info.file_size - header_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise DataFileError(f"{where} cannot be read from the archive ({' '.join(str(exc).split())}); it is "
                            "truncated or corrupt") from None


def _npy_header(f: IO[bytes], where: object) -> tuple[tuple[int, ...], np.dtype[Any], bool]:
    """The shape, dtype and order that a ``.npy`` header declares, after checking that they describe
    numbers (never Python objects)."""
    if _read_up_to(f, len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise DataFileError(f"{where} is not a .npy file (it does not start with numpy's magic bytes); save the "
                            "array with numpy.save")
    try:
        version = tuple(_read_up_to(f, 2))
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version} is not one numpy writes")
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, EOFError) as exc:
        raise DataFileError(f"{where} is not a .npy file numpy can read (its header: "
                            f"{' '.join(str(exc).split())})") from None
    if dtype.hasobject:
        raise DataFileError(f"{where} holds Python objects (a pickled array), which vaelib never loads; save a "
                            "numeric array with numpy.save")
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise DataFileError(f"{where} holds values of type {dtype}, not numbers; save a numeric array")
    return tuple(int(s) for s in shape), dtype, bool(fortran)


def _read_npy_body(f: IO[bytes], where: object, shape: tuple[int, ...], dtype: np.dtype[Any], fortran: bool,
                   held: int) -> np.ndarray:
    return _native(_read_declared(f, where, shape, dtype, held)).reshape(shape, order="F" if fortran else "C")


def _read_declared(f: IO[bytes], where: object, shape: tuple[int, ...], dtype: np.dtype[Any],
                   held: int | None) -> np.ndarray:
    """The data a header declares (``shape``, ``dtype``) as a flat array, read from ``f`` after
    comparing the declared bytes with the bytes the file ``held`` (when known) and with the memory
    available; an error when the file ends before them."""
    expected = limits.element_count(shape) * dtype.itemsize  # Python ints: no wrap-around past 2**63
    if held is not None and held != expected:
        raise DataFileError(f"{where} holds {held} data bytes but its header promises {expected} for shape {shape}; "
                            "the file is truncated or corrupt")
    _check_declared_memory(where, expected, shape)
    flat = np.empty(limits.element_count(shape), dtype=dtype)
    got = _read_into(f, flat)
    if got < expected:
        raise DataFileError(f"{where} holds {got} data bytes but its header promises {expected} for shape {shape}; "
                            "the file is truncated or corrupt")
    return flat


def _check_declared_memory(where: object, expected: int, shape: tuple[int, ...]) -> None:
    limits.check_memory(expected, f"{where} (shape {shape})", "use a smaller file, or read it in parts")


def _native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order, swapped in place (no second copy)."""
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != ("<" if _LITTLE else ">"):
        array.byteswap(inplace=True)
        return array.view(array.dtype.newbyteorder("="))
    return array


_LITTLE = np.little_endian


def _read_up_to(f: IO[bytes], n: int) -> bytes:
    """At most n bytes, fewer only at the end of the file."""
    parts, left = [], n
    while left > 0:
        part = f.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_into(f: IO[bytes], array: np.ndarray) -> int:
    """Fill ``array``'s bytes from ``f``; the number of bytes read (fewer at the end of the file)."""
    view = array.reshape(-1).view(np.uint8).data
    done = 0
    while done < len(view):
        step = min(len(view) - done, 2**28)
        count = f.readinto(view[done:done + step])  # type: ignore[attr-defined]
        if not count:
            break
        done += count
    return done


# ----------------------------------------------------------------------------------------------
# Text: .csv and .tsv


class _Selection:
    """The columns asked for, by name or position, resolved against a file's columns."""

    def __init__(self, columns: Sequence[Column] | None, drop: Sequence[Column] | None, label: Column | None):
        self.columns = None if columns is None else _column_list("columns", columns)
        self.drop = [] if drop is None else _column_list("drop", drop)
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise TypeError(f"label must be a column name (str) or position (int), got {type(label).__name__}")
        self.label = label

    @property
    def selects(self) -> bool:
        return self.columns is not None or bool(self.drop) or self.label is not None

    def resolve(self, where: object, width: int, names: list[str] | None) -> tuple[list[int], int | None]:
        """The positions (0-based, in a table of ``width`` columns named ``names``) of x's columns and
        of the label column."""
        def position(column: Column, argument: str) -> int:
            if isinstance(column, int):
                if not -width <= column < width:
                    raise DataFileError(f"{where}: {argument} names column {column}, but the data have {width} "
                                        f"columns (positions 0 to {width - 1})")
                return column % width
            if names is None:
                raise DataFileError(f"{where}: {argument} names the column {column!r}, but the file has no header; "
                                    "give columns by position (0-based)")
            if column not in names:
                shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
                raise DataFileError(f"{where}: {argument} names the column {column!r}, which the header does not "
                                    f"have; its columns are {shown}")
            return names.index(column)

        label = None if self.label is None else position(self.label, "label")
        chosen = list(range(width)) if self.columns is None else [position(c, "columns") for c in self.columns]
        if len(set(chosen)) != len(chosen):
            raise DataFileError(f"{where}: columns names a column twice")
        dropped = {position(c, "drop") for c in self.drop}
        if self.columns is not None and label in chosen:
            raise DataFileError(f"{where}: the label column is also one of columns; a label is not a feature")
        kept = [c for c in chosen if c not in dropped and c != label]
        if not kept:
            raise DataFileError(f"{where}: no columns are left for the data after columns, drop and label")
        return kept, label


def _column_list(argument: str, value: Sequence[Column]) -> list[Column]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{argument} must be a list of column names (str) or positions (int), got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise TypeError(f"{argument} must hold column names (str) or positions (int), got {item!r}")
    return list(value)


def _select_from_array(path: Path, array: np.ndarray, labels: np.ndarray | None, selection: _Selection) -> Table:
    if array.ndim < 2:
        raise DataFileError(f"{path} holds an array of shape {array.shape}; vaelib needs one row per point, shape "
                            "(n, d): save n points of one feature as (n, 1)")
    if 0 in array.shape:
        raise DataFileError(f"{path} holds an empty array of shape {array.shape}")
    matrix = array.reshape(len(array), -1)
    if selection.selects:
        kept, label = selection.resolve(path, matrix.shape[1], None)
        if label is not None:
            labels = _labels_from(matrix[:, label])
        if kept != list(range(matrix.shape[1])):
            matrix = matrix[:, kept]
    limits.check_memory(4 * matrix.size, f"{path} as float32", "use a smaller file")
    return Table(torch.as_tensor(matrix, dtype=torch.float32), labels, None)


def _read_delimited(path: Path, delimiter: str, selection: _Selection, header: bool | str) -> Table:
    with _io.open_regular(path, "a data file") as raw:
        rows_bound = _count_lines(raw) + 1
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            return _DelimitedReader(path, delimiter, text).read(selection, header, rows_bound)
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{path} is not a text file in UTF-8 ({exc})") from None
        finally:
            text.detach()


def _count_lines(f: BinaryIO) -> int:
    count = 0
    while block := f.read(2**22):
        count += block.count(b"\n")
    return count


class _DelimitedReader:
    """One pass over a text file's lines, chunk by chunk (see ``_read_delimited``)."""

    def __init__(self, path: Path, delimiter: str, text: IO[str]):
        self.path, self.delimiter, self.text = path, delimiter, text
        self.kind = "comma" if delimiter == "," else "tab"
        self.line_number = 0

    def read(self, selection: _Selection, header: bool | str, rows_bound: int) -> Table:
        first = self._first_fields()
        if first is None:
            raise DataFileError(f"{self.path} holds no rows of numbers")
        first_number, fields = first
        following = self._peek_fields()
        is_header = header is True or (header == "auto" and _looks_like_header(fields, following))
        index = is_header and fields[0].strip() in _INDEX_NAMES and len(fields) > 1
        self.index = 1 if index else 0
        width = len(fields) - self.index
        self.file_width = len(fields)
        self.first_row = "header" if is_header else "first row of numbers"
        names = [f.strip() for f in fields[self.index:]] if is_header else None
        kept, label = selection.resolve(self.path, width, names)
        self.usecols = [c + self.index for c in kept]
        self.label = None if label is None else label + self.index
        limits.check_memory(4 * rows_bound * len(kept), f"{self.path} as float32 (up to {rows_bound:,} rows)",
                            "use a smaller file")
        out = np.empty((rows_bound, len(kept)), dtype=np.float32)
        labels: list[np.ndarray] = []
        pending = self.peeked if is_header else [(first_number, self.original_line), *self.peeked]
        rows = 0
        while True:
            chunk = pending + self._lines(CHUNK_LINES - len(pending))
            pending = []
            if not chunk:
                break
            values, chunk_labels = self._parse(chunk)
            if rows + len(values) > len(out):  # more rows than newlines (lone \r line ends): grow
                out = np.concatenate([out[:rows], np.empty((len(values) + len(out), len(kept)), np.float32)])
            out[rows:rows + len(values)] = values
            rows += len(values)
            if chunk_labels is not None:
                labels.append(chunk_labels)
        if rows == 0:
            raise DataFileError(f"{self.path} holds no rows of numbers")
        x = torch.from_numpy(out[:rows])
        return Table(x, None if self.label is None else _labels_from(np.concatenate(labels)),
                     None if names is None else [names[c] for c in kept])

    def _first_fields(self) -> tuple[int, list[str]] | None:
        for line in self.text:
            self.line_number += 1
            fields = next(csv.reader([line], delimiter=self.delimiter), [])
            if fields:
                self.original_line = line
                return self.line_number, fields
        return None

    def _peek_fields(self) -> list[str] | None:
        """The fields of the next non-blank line, which is kept to be read again."""
        self.peeked = self._lines(CHUNK_LINES)
        return next((f for f in (next(csv.reader([line], delimiter=self.delimiter), []) for _, line in self.peeked)
                     if f), None)

    def _lines(self, count: int) -> list[tuple[int, str]]:
        start = self.line_number
        lines = list(itertools.islice(self.text, count))
        self.line_number += len(lines)
        return [(start + i + 1, line) for i, line in enumerate(lines)]

    def _parse(self, chunk: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray | None]:
        """A chunk of lines as float32 values (and labels): NumPy's parser where the lines are plain, the
        csv module (quoted fields) or a line-by-line check (a precise error) otherwise."""
        lines = [line for _, line in chunk]
        if not any('"' in line for line in lines) and self._plain_widths(lines):
            try:
                values = np.loadtxt(lines, delimiter=self.delimiter, dtype=np.float32, comments=None, ndmin=2,
                                    usecols=self.usecols, encoding=None)
                labels = None if self.label is None else np.loadtxt(
                    lines, delimiter=self.delimiter, dtype=str, comments=None, ndmin=1, usecols=[self.label],
                    encoding=None)
                if len(values) == len(lines) - sum(1 for line in lines if not line.strip()):
                    return values, None if labels is None else np.char.strip(labels)
            except ValueError:
                pass  # the line-by-line parse below finds the line and says what is wrong
        return self._parse_slowly(chunk)

    def _plain_widths(self, lines: list[str]) -> bool:
        expected = self.file_width - 1
        return all(line.count(self.delimiter) == expected or not line.strip() for line in lines)

    def _parse_slowly(self, chunk: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray | None]:
        values, labels = [], []
        for number, line in chunk:
            fields = next(csv.reader([line], delimiter=self.delimiter), [])
            if not fields:
                continue
            if len(fields) != self.file_width:
                raise DataFileError(f"{self.path}, line {number}: {len(fields)} field(s), but the {self.first_row} "
                                    f"has {self.file_width}; every line needs the same number of {self.kind}-separated "
                                    "fields")
            row = []
            for column in self.usecols:
                try:
                    row.append(float(fields[column]))
                except ValueError:
                    field = fields[column]
                    what = "is empty" if not field.strip() else f"holds {field!r}, which is not a number"
                    hint = ("; separate fields with commas" if self.delimiter == "," and any(s in field for s in ";\t")
                            else "; leave a text column out with drop, or make it the label")
                    raise DataFileError(f"{self.path}, line {number}, column {column + 1} {what}{hint}") from None
            values.append(row)
            if self.label is not None:
                labels.append(fields[self.label].strip())
        array = np.asarray(values, dtype=np.float32).reshape(len(values), len(self.usecols))
        return array, None if self.label is None else np.asarray(labels, dtype=str)


def _looks_like_header(fields: list[str], following: list[str] | None) -> bool:
    """Whether a text file's first fields are a header (``following``: the next line's fields)."""
    if any(field.strip() and not _is_number(field) for field in fields):
        return True
    if any(not field.strip() for field in fields):
        return fields[0].strip() == "" and all(_is_number(f) for f in fields[1:])  # pandas' ",0,1,2"
    d = len(fields)
    counts = [field.strip() for field in fields] == [str(i) for i in range(d)]
    goes_on = following is not None and [f.strip() for f in following] == [str(i) for i in range(d, 2 * d)]
    return d >= 3 and counts and not goes_on


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _labels_from(values: np.ndarray) -> np.ndarray:
    """Labels as numbers where they all are (int64 when all whole), else as text."""
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        values = values.astype(np.float64)
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return values.astype(str)
    if np.isfinite(numbers).all() and (numbers == np.round(numbers)).all() and np.abs(numbers).max(initial=0) < 2**53:
        return numbers.astype(np.int64)
    return numbers


def _check_finite(path: Path, x: torch.Tensor) -> None:
    """x (n, d) finite, else a DataFileError naming the first bad value and counting the bad rows."""
    bad_rows, first = 0, None
    for start in range(0, len(x), 2**16):
        finite = torch.isfinite(x[start:start + 2**16])
        if not finite.all():
            rows = (~finite).any(dim=1)
            bad_rows += int(rows.sum())
            if first is None:
                row, column = (int(i) for i in (~finite).nonzero()[0])
                first = (start + row, column)
    if first is not None:
        row, column = first
        raise DataFileError(f"{path}: the value in row {row + 1}, column {column + 1} (counting rows of data from 1) "
                            f"is {x[row, column].item()}; {bad_rows} of {len(x)} rows hold NaN or infinite values "
                            "(as float32): drop or impute them first")
