"""Reading data files: Stan-style JSON, CSV with a header row, NumPy `.npz`.

This module's one job is turning a file into {name: raw value} (nested lists, NumPy arrays,
numbers, strings as they were found), choosing the format by the file's extension. It
knows nothing about a model: checking the values against the model's `data` declarations
(sizes, shapes, bounds, constraints) is runtime/data.py's job. Only problems that make a
file unreadable raise a DataError here: a missing file, an unknown extension, invalid
JSON, duplicate names, CSV rows of the wrong length, missing or repeated indexed CSV
columns, a non-archive or pickled `.npz`. Cells that are not numbers are kept (as strings)
so that validation can report them with their index.

CSV: each column is a 1-D array (the row is the first index); `X[1]`, `X[2]` (or `X.1`,
`X.2`) become the columns of an array X, and `X[2, 3]` (or `X.2.3`) a higher-rank one.
Only NumPy is imported, not torch.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import DataError

__all__ = ["read_data_file"]

_FORMATS = (".json", ".csv", ".npz")


def read_data_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a data file into {name: raw value}, choosing the format by extension.

    No checking against a model happens here (the CLI also uses this to list unused names);
    only problems that make the file unreadable raise a DataError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(f"cannot read data file {str(path)!r}: unknown format "
                        f"{suffix or '(no extension)'!r} (use .json, .csv or .npz)")
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} not found")
    try:
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".csv":
            return _read_csv(path)
        return _read_npz(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data file {str(path)!r}: {exc}") from exc


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a Stan-style JSON object; NaN/Infinity literals pass through to be reported."""
    text = path.read_text(encoding="utf-8-sig")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """JSON silently keeps the last of two equal keys; a data file must not have them."""
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DataError(f"data file {str(path)!r}: the name {key!r} appears twice")
            out[key] = value
        return out

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise DataError(f"data file {str(path)!r} is not valid JSON: {exc.msg} at line "
                        f"{exc.lineno}, column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise DataError(f"data file {str(path)!r} must hold a JSON object "
                        f'{{"name": value, ...}}, not a {type(obj).__name__}')
    return obj


_COLUMN = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                     r"(?:\[(?P<bracket>\s*\d+(?:\s*,\s*\d+)*\s*)\]|(?P<dots>(?:\.\d+)+))?")


def _read_csv(path: Path) -> dict[str, Any]:
    """Read columns as 1-D arrays; `X[1]`, `X[2]` (or `X.1`, `X.2`) become the columns of X.

    Column names with several indices (`X[2, 3]` or `X.2.3`) give higher-rank arrays, the
    CSV row always being the first index.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        rows = [(reader.line_num, row) for row in reader if row]
    if not rows:
        raise DataError(f"data file {str(path)!r} is empty (a CSV file needs a header row)")
    header = [name.strip() for name in rows[0][1]]
    body = rows[1:]
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"data file {str(path)!r}, line {line}: {len(row)} fields, "
                            f"but the header has {len(header)}")
    columns = list(zip(*(row for _, row in body), strict=True)) or [()] * len(header)
    parsed = [_parse_csv_column(column) for column in columns]
    return _assemble_columns(path, header, parsed, len(body))


def _parse_csv_column(cells: Sequence[str]) -> np.ndarray:
    """Convert a column of text to int64, else float64; keep unparseable cells as strings.

    Keeping the bad cells (in an object array) lets validation report them with their index.
    """
    text = np.array(cells, dtype=str)
    for dtype in (np.int64, np.float64):
        try:
            return text.astype(dtype)
        except (ValueError, OverflowError):
            pass
    out = np.empty(len(cells), dtype=object)
    for i, cell in enumerate(cells):  # error path only: some cell is not a number
        try:
            out[i] = float(cell)
        except ValueError:
            out[i] = cell
    return out


def _assemble_columns(path: Path, header: list[str], columns: list[np.ndarray],
                      n_rows: int) -> dict[str, Any]:
    """Group indexed column names into arrays, requiring every index to be present once."""
    plain: dict[str, np.ndarray] = {}
    indexed: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
    for title, column in zip(header, columns, strict=True):
        match = _COLUMN.fullmatch(title)
        index_text = match and (match["bracket"] or match["dots"])
        if not match or not index_text:
            if title in plain or title in indexed:
                raise DataError(f"data file {str(path)!r}: column {title!r} appears twice")
            plain[title] = column
            continue
        name = match["name"]
        index = tuple(int(part) for part in re.split(r"[,.]", index_text) if part.strip())
        if min(index) < 1:
            raise DataError(f"data file {str(path)!r}: column {title!r}: indices are 1-based")
        group = indexed.setdefault(name, {})
        if name in plain or index in group:
            raise DataError(f"data file {str(path)!r}: column {_col(name, index)} "
                            f"appears twice")
        if group and len(next(iter(group))) != len(index):
            raise DataError(f"data file {str(path)!r}: columns of {name!r} have different "
                            f"numbers of indices ({title!r})")
        group[index] = column
    out: dict[str, Any] = dict(plain)
    for name, group in indexed.items():
        out[name] = _stack_columns(path, name, group, n_rows)
    return out


def _col(name: str, index: tuple[int, ...]) -> str:
    """The canonical spelling of an indexed CSV column, for messages."""
    return f"'{name}[{', '.join(map(str, index))}]'"


def _stack_columns(path: Path, name: str, group: dict[tuple[int, ...], np.ndarray],
                   n_rows: int) -> np.ndarray:
    """Build the array whose `[:, i, j, ...]` slices are the columns `name[i, j, ...]`."""
    shape = tuple(max(index[k] for index in group) for k in range(len(next(iter(group)))))
    if len(group) != math.prod(shape):
        missing = next(index for index in np.ndindex(*shape)
                       if tuple(i + 1 for i in index) not in group)
        raise DataError(f"data file {str(path)!r}: column "
                        f"{_col(name, tuple(i + 1 for i in missing))} is missing (the columns "
                        f"of {name!r} go up to {_col(name, shape)})")
    dtype = (object if any(column.dtype == object for column in group.values())
             else np.result_type(*group.values()))
    out = np.empty((n_rows, *shape), dtype=dtype)
    for index, column in group.items():
        out[(slice(None), *(i - 1 for i in index))] = column
    return out


def _read_npz(path: Path) -> dict[str, Any]:
    """Read arrays by name; pickled (object) arrays are refused rather than unpickled."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read data file {str(path)!r} as .npz: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"data file {str(path)!r} holds a single array, not an .npz archive "
                        "of named arrays (save with numpy.savez)")
    with loaded:
        try:
            return {name: loaded[name] for name in loaded.files}
        except ValueError as exc:
            raise DataError(f"data file {str(path)!r}: {exc} (object arrays are not loaded; "
                            "save numbers only)") from None
