"""Checking the data a compiled model is run on against its `data` declarations.

This module's one job is validation: given {name: raw value} (a dict, or a file read by
runtime/data_files.py), it infers sizes a file cannot hold (CSV has no scalars), and
checks every `data` declaration of the model (LANGUAGE.md rule 24): missing names,
NaN/Inf/null, strings, non-integral ints, ragged arrays, shapes, bounds and the
`simplex`/`ordered`/`cholesky_corr` constraints, returning the values converted. Every
problem is a `DataError` naming the variable, the 1-based index of the first offending
element, and what was expected. All checks are vectorised with NumPy; Python loops over
elements run only on the error path (to describe the first bad element).

Decisions worth knowing:
* Bounds are inclusive, as in Stan (`real<lower=0>` accepts 0).
* Booleans are numbers 0/1 for both `int` and `real` data (NumPy/torch do the same, and an
  indicator covariate is naturally boolean). Strings are never numbers, also not "1.5".
* A real with an integral value (3.0) is accepted for `int` data and converted.
* Scalars must be scalars: `[5]` is not accepted for a scalar, nor `5` for a vector of size 1.
  An empty list (`[]`, `[[], []]`) is accepted for a shape it is a prefix of.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.data_files import read_data_file
from runtime.errors import DataError
from runtime.text import encoded

__all__ = ["DataSpec", "load_data", "unused_names"]

CONSTRAINTS = frozenset({"simplex", "ordered", "cholesky_corr"})
"""The type shorthands with a check beyond bounds (`positive`/`unit` arrive as bounds)."""

TOLERANCE = 1e-8
"""Slack for the simplex sum and the cholesky_corr row norms (Stan uses the same)."""

_INT64_LIMIT = 2**63

Dim = int | str | Callable[[Mapping[str, Any]], int]
Bound = float | int | str | Callable[[Mapping[str, Any]], Any] | None


@dataclass(frozen=True)
class DataSpec:
    """One `data NAME: TYPE` declaration, as the generated code describes it to the loader.

    `dims` is the full shape: an int, the name of another int data variable, or a callable
    `f(data) -> int` over the data loaded so far (a size expression). `cholesky_corr[K]` is
    given as dims `(K, K)`. A callable dim or bound may carry a `text` attribute (the
    expression as written in the model, e.g. "K + 1") that error messages show.
    `lower`/`upper` are inclusive: a number, the name of another data variable, or a
    callable `f(data)` giving a number or an array broadcastable to the shape.
    """

    name: str
    base: str
    dims: tuple[Dim, ...] = ()
    lower: Bound = None
    upper: Bound = None
    constraint: str | None = None
    where: str = ""

    def __post_init__(self) -> None:
        """Reject malformed specs early: they are bugs in the caller, not in the user's data."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DataSpec name must be a non-empty string, got {self.name!r}")
        if self.base not in ("real", "int"):
            raise ValueError(f"DataSpec {self.name!r}: base must be 'real' or 'int', "
                             f"got {self.base!r}")
        object.__setattr__(self, "dims", tuple(self.dims))
        for dim in self.dims:
            if isinstance(dim, bool) or not isinstance(dim, int | str) and not callable(dim):
                raise TypeError(f"DataSpec {self.name!r}: a dim must be an int, a name or a "
                                f"callable, got {dim!r}")
            if isinstance(dim, int) and dim < 0:
                raise ValueError(f"DataSpec {self.name!r}: negative dim {dim}")
        if self.constraint is not None and self.constraint not in CONSTRAINTS:
            raise ValueError(f"DataSpec {self.name!r}: unknown constraint {self.constraint!r}")
        needed = {"simplex": 1, "ordered": 1, "cholesky_corr": 2}.get(self.constraint or "", 0)
        if len(self.dims) < needed:
            raise ValueError(f"DataSpec {self.name!r}: {self.constraint} needs at least "
                             f"{needed} dim(s), got {self.dims!r}")


# ---------------------------------------------------------------------------------------
# Public entry points


def unused_names(raw: Mapping[str, Any], specs: Iterable[DataSpec]) -> list[str]:
    """Names in the data that the model does not declare, sorted (the CLI warns about them)."""
    declared = {spec.name for spec in specs}
    return sorted(str(name) for name in raw if name not in declared)


def load_data(source: str | os.PathLike[str] | Mapping[str, Any], specs: Sequence[DataSpec],
              optional: Iterable[str] = (),
              inferred_sizes: dict[str, str] | None = None) -> dict[str, Any]:
    """Read `source` and return every declared data variable, checked and converted.

    Int scalars come back as `int`, real scalars as `float`, arrays as C-contiguous
    int64/float64 NumPy arrays of exactly the declared shape (always a copy). Names in
    `optional` may be missing and are then absent from the result. Extra names are ignored.
    """
    if isinstance(source, Mapping):
        raw, label = source, "the data"
    elif isinstance(source, str | os.PathLike):
        raw, label = read_data_file(source), str(source)
    else:
        raise TypeError(f"load_data: source must be a path or a mapping, got {type(source)}")
    raw, _ = encoded(raw)  # texts given as characters of an alphabet (runtime/text.py)
    may_skip = frozenset(optional)
    inferred = _infer_sizes(raw, specs, label)
    if inferred_sizes is not None:  # said to the user: a size they did not give
        inferred_sizes.update({k: f"{v}, from {how}" for k, (v, how) in inferred.items()})
    data: dict[str, Any] = {}
    for spec in specs:
        if spec.name in raw:
            value = raw[spec.name]
        elif spec.name in inferred:
            value = inferred[spec.name][0]
        elif spec.name in may_skip:
            continue
        else:
            where = f" ({spec.where})" if spec.where else ""
            raise DataError(f"data '{spec.name}'{where} is missing from {label}")
        try:
            data[spec.name] = _load_one(spec, value, data)
        except DataError as exc:
            if spec.name not in inferred:
                raise
            raise DataError(f"{exc} ('{spec.name}' is not in {label}; it was inferred as "
                            f"{inferred[spec.name][1]})") from None
    return data


# ---------------------------------------------------------------------------------------
# Size inference


def _raw_shape(value: Any) -> tuple[int, ...]:
    """The shape a raw value claims, following first elements (raggedness is checked later)."""
    if isinstance(value, np.ndarray | torch.Tensor):
        return tuple(value.shape)
    shape: list[int] = []
    while isinstance(value, list | tuple | np.ndarray):
        shape.append(len(value))
        if not len(value):
            break
        value = value[0]
    return tuple(shape)


def _infer_sizes(raw: Mapping[str, Any], specs: Sequence[DataSpec],
                 label: str) -> dict[str, tuple[int, str]]:
    """Bind missing int scalars from the lengths of present arrays that use them as a dim.

    Returns {size name: (value, how it was inferred)}. A CSV file cannot hold `N`, so
    `data y: real[N]` with a `y` column gives N = len(y); two arrays disagreeing is an error.
    """
    out: dict[str, tuple[int, str]] = {}
    for spec in specs:
        if spec.name in raw or spec.base != "int" or spec.dims:
            continue
        seen: list[tuple[int, str]] = []
        for other in specs:
            if other.name not in raw or spec.name not in other.dims:
                continue
            shape = _raw_shape(raw[other.name])
            for axis, dim in enumerate(other.dims):
                if dim == spec.name and axis < len(shape):
                    seen.append((shape[axis], f"the length of '{other.name}' along dim "
                                              f"{axis + 1}"))
        if not seen:
            continue
        for value, how in seen[1:]:
            if value != seen[0][0]:
                where = f" ({spec.where})" if spec.where else ""
                raise DataError(f"data '{spec.name}'{where} is missing from {label}, and the "
                                f"arrays it sizes disagree: {seen[0][1]} is {seen[0][0]} but "
                                f"{how} is {value}")
        out[spec.name] = seen[0]
    return out


# ---------------------------------------------------------------------------------------
# Checking one variable


def _load_one(spec: DataSpec, value: Any, data: Mapping[str, Any]) -> Any:
    """Convert and check one variable against its spec; `data` holds those loaded before."""
    arr = _to_numeric(spec, value)
    shape, shape_text = _resolve_dims(spec, data)
    arr = _fit_shape(spec, arr, value, shape, shape_text)
    arr = _check_base(spec, arr)
    for which in ("lower", "upper"):
        _check_bound(spec, arr, which, data)
    if spec.constraint == "simplex":
        _check_simplex(spec, arr)
    elif spec.constraint == "ordered":
        _check_ordered(spec, arr)
    elif spec.constraint == "cholesky_corr":
        _check_cholesky_corr(spec, arr)
    if arr.ndim == 0:
        return int(arr) if spec.base == "int" else float(arr)
    return np.ascontiguousarray(arr)


def _fail(spec: DataSpec, message: str) -> DataError:
    """A DataError for `spec`, pointing at its declaration when the location is known."""
    return DataError(f"{message} (declared at {spec.where})" if spec.where else message)


def _at(name: str, index: Sequence[int]) -> str:
    """`y[2, 1]` from a 0-based index: messages use the model's 1-based indexing."""
    if not len(index):
        return name
    return f"{name}[{', '.join(str(int(i) + 1) for i in index)}]"


def _row(index: Sequence[int]) -> str:
    """`row 2`, or `row [2, 1]` for an index into the leading dims of a higher-rank array."""
    if len(index) == 1:
        return f"row {int(index[0]) + 1}"
    return f"row [{', '.join(str(int(i) + 1) for i in index)}]"


def _fmt(value: Any) -> str:
    """A data value as the user wrote it: ints plainly, floats by repr (`-1.0`, `nan`)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return repr(value)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """The 0-based index of the first True in C order (callers know there is one)."""
    flat = int(np.flatnonzero(mask)[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


# --- conversion to a numeric array


def _is_sequence(value: Any) -> bool:
    """Nested containers of a raw value: lists and tuples (JSON) and non-scalar arrays."""
    return isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.ndim > 0)


def _to_numeric(spec: DataSpec, value: Any) -> np.ndarray:
    """A NumPy array of kind bool/int/uint/float holding `value`, or a DataError saying why not.

    Strings, nulls and other non-numbers are found on the original value, because NumPy
    would otherwise turn `[1, "a"]` into an array of strings and lose which was which.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value) if isinstance(value, np.ndarray) else np.array(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _fail(spec, _ragged_message(spec.name, value)
                    or f"data '{spec.name}': cannot be read as an array ({exc})") from None
    kind = arr.dtype.kind
    if kind in "biuf":
        return arr
    if kind == "c":
        index = _first(np.imag(arr) != 0) if np.any(np.imag(arr) != 0) else ()
        raise _fail(spec, f"data '{_at(spec.name, index)}': complex numbers are not allowed")
    if kind not in "USO":
        raise _fail(spec, f"data '{spec.name}': expected numbers, got an array of dtype "
                          f"{arr.dtype}")
    objects = arr if kind == "O" else np.array(value, dtype=object)
    _raise_first_non_number(spec, objects)
    return _numeric_from_objects(spec, objects)


def _ragged_message(name: str, value: Any) -> str | None:
    """Describe the first place where a nested list is not rectangular, or None if it is.

    The first element at each depth sets the expected shape; the first container (in C
    order) that differs is reported next to that reference element.
    """
    reference: list[int] = []
    node = value
    while _is_sequence(node):
        reference.append(len(node))
        if not len(node):
            break
        node = node[0]

    def where(path: tuple[int, ...]) -> str:
        """`row 3` for a top-level row, else the element's index."""
        return _row(path) if len(path) == 1 else _at(name, path)

    def describe(node: Any) -> str:
        """What sits at a position, in words."""
        if _is_sequence(node):
            return f"has length {len(node)}"
        if isinstance(node, str):
            return "is a string"
        return "is null" if node is None else "is a single value"

    def walk(node: Any, path: tuple[int, ...]) -> tuple[Any, tuple[int, ...]] | None:
        """The first (node, path) in C order whose structure differs from the reference."""
        depth = len(path)
        if depth == len(reference):
            return (node, path) if _is_sequence(node) else None
        if not _is_sequence(node) or len(node) != reference[depth]:
            return node, path
        for i, child in enumerate(node):
            found = walk(child, (*path, i))
            if found:
                return found
        return None

    found = walk(value, ())
    if found is None or not found[1]:
        return None
    bad, path = found
    ref_path = (0,) * len(path)
    ref: Any = value
    for i in ref_path:
        ref = ref[i]
    return (f"data '{name}': ragged array: {where(path)} {describe(bad)}, "
            f"{where(ref_path)} {describe(ref)}")


def _raise_first_non_number(spec: DataSpec, objects: np.ndarray) -> None:
    """Report the first element of an object array that is not a number (error path only)."""
    for index, item in np.ndenumerate(objects):
        if isinstance(item, bool | int | float | np.bool_ | np.integer | np.floating):
            continue
        at = _at(spec.name, index)
        if item is None:
            raise _fail(spec, f"data '{at}': a missing value (null/None) is not allowed")
        if isinstance(item, str | np.str_ | bytes):
            text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
            if not text.strip():
                raise _fail(spec, f"data '{at}': expected a number, got an empty value")
            shown = json.dumps(text if len(text) <= 40 else text[:37] + "...")
            raise _fail(spec, f"data '{at}': expected a number, got the string {shown}")
        kind = {dict: "a JSON object", list: "a list", tuple: "a list"}.get(
            type(item), f"a {type(item).__name__}")
        raise _fail(spec, f"data '{at}': expected a number, got {kind}")


def _numeric_from_objects(spec: DataSpec, objects: np.ndarray) -> np.ndarray:
    """Turn an object array of numbers into a numeric one; ints beyond 64 bits stay an error."""
    arr = np.array(objects.tolist())
    if arr.dtype.kind in "biuf":
        return arr
    if spec.base == "real":
        return objects.astype(np.float64)
    too_big = np.array([abs(x) >= _INT64_LIMIT if isinstance(x, int) else False
                        for x in objects.reshape(-1)]).reshape(objects.shape)
    index = _first(too_big) if too_big.any() else ()
    raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(objects[index])}: "
                      "too large for a 64-bit integer")


# --- shape


def _resolve_dims(spec: DataSpec, data: Mapping[str, Any]) -> tuple[tuple[int, ...], str]:
    """The concrete shape, and its text for messages: `[J] = [8]`, or `[8]` if all literal."""
    values: list[int] = []
    texts: list[str] = []
    for dim in spec.dims:
        if isinstance(dim, int):
            value, text = dim, str(dim)
        elif isinstance(dim, str):
            if dim not in data:
                raise _fail(spec, f"data '{spec.name}': its size '{dim}' is not available "
                                  f"(data '{dim}' was not given)")
            value, text = data[dim], dim
        else:
            value = _call(spec, dim, data, "size")
            text = getattr(dim, "text", None) or _fmt(value)
        values.append(_as_size(spec, dim, text, value))
        texts.append(text)
    concrete = f"[{', '.join(map(str, values))}]"
    symbolic = f"[{', '.join(texts)}]"
    return tuple(values), concrete if symbolic == concrete else f"{symbolic} = {concrete}"


def _call(spec: DataSpec, func: Callable[[Mapping[str, Any]], Any],
          data: Mapping[str, Any], what: str) -> Any:
    """Evaluate a size or bound expression; a name it needs that was not given is user-facing."""
    try:
        return func(data)
    except KeyError as exc:
        text = getattr(func, "text", None)
        shown = f" {text}" if text else ""
        raise _fail(spec, f"data '{spec.name}': its {what}{shown} needs data "
                          f"'{exc.args[0]}', which was not given") from None


def _as_size(spec: DataSpec, dim: Dim, text: str, value: Any) -> int:
    """Check that a resolved dim is a non-negative integer scalar."""
    if isinstance(value, torch.Tensor | np.ndarray):
        value = value.item() if value.size == 1 and value.ndim == 0 else value
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _fail(spec, f"data '{spec.name}': its size {text} = {_fmt(value)} is not an "
                          "integer")
    value = int(value)
    if value < 0:
        if isinstance(dim, str):
            where = f" ({spec.where})" if spec.where else ""
            raise DataError(f"data '{dim}' = {value} is negative, but it is a size of "
                            f"'{spec.name}'{where}")
        raise _fail(spec, f"data '{spec.name}': its size {text} is negative ({value})")
    return value


def _fit_shape(spec: DataSpec, arr: np.ndarray, value: Any, shape: tuple[int, ...],
               shape_text: str) -> np.ndarray:
    """Require the declared shape exactly; an empty nested list may omit trailing dims."""
    if arr.shape == shape:
        return arr
    if arr.size == 0 and arr.ndim and arr.ndim <= len(shape) and shape[:arr.ndim] == arr.shape:
        return arr.reshape(shape)  # `[]` or `[[], []]`: JSON cannot spell the trailing dims
    name = spec.name
    if not shape:
        got = (f"a list of length {len(value)}" if isinstance(value, list | tuple)
               else f"an array of shape [{', '.join(map(str, arr.shape))}]")
        raise _fail(spec, f"data '{name}': expected a scalar, got {got}")
    got = (f"a scalar ({_fmt(arr)})" if arr.ndim == 0
           else f"[{', '.join(map(str, arr.shape))}]")
    raise _fail(spec, f"data '{name}': expected shape {shape_text}, got {got}")


# --- values


def _check_base(spec: DataSpec, arr: np.ndarray) -> np.ndarray:
    """Reject NaN/Inf, and for int data non-integral or out-of-range values; return a copy
    as float64 or int64."""
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            index = _first(~finite)
            bad = float(arr[index])
            what = "NaN" if math.isnan(bad) else ("Inf" if bad > 0 else "-Inf")
            raise _fail(spec, f"data '{_at(spec.name, index)}': {what} is not allowed")
    if spec.base == "real":
        return np.array(arr, dtype=np.float64, order="C")
    if arr.dtype.kind == "f":
        fractional = arr != np.floor(arr)
        if fractional.any():
            index = _first(fractional)
            raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])}: "
                              "expected an integer")
        huge = np.abs(arr) >= _INT64_LIMIT
        if huge.any():
            index = _first(huge)
            raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])}: "
                              "too large for a 64-bit integer")
    elif arr.dtype.kind == "u":
        huge = arr > np.iinfo(np.int64).max
        if huge.any():
            index = _first(huge)
            raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])}: "
                              "too large for a 64-bit integer")
    return np.array(arr, dtype=np.int64, order="C")


def _check_bound(spec: DataSpec, arr: np.ndarray, which: str,
                 data: Mapping[str, Any]) -> None:
    """Check an inclusive lower or upper bound, which may be a number, a name or a callable."""
    bound = getattr(spec, which)
    if bound is None:
        return
    text: str | None = None
    if isinstance(bound, str):
        if bound not in data:
            raise _fail(spec, f"data '{spec.name}': its {which} bound '{bound}' is not "
                              f"available (data '{bound}' was not given)")
        value, text = data[bound], bound
    elif callable(bound):
        value, text = _call(spec, bound, data, f"{which} bound"), getattr(bound, "text", None)
    else:
        value = bound
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    limit = np.asarray(value)
    try:
        limit = np.broadcast_to(limit, arr.shape)
    except ValueError:
        raise _fail(spec, f"data '{spec.name}': its {which} bound{f' {text}' if text else ''}"
                          f" has shape {list(np.shape(value))}, which does not fit its shape "
                          f"{list(arr.shape)}") from None
    bad = arr < limit if which == "lower" else arr > limit
    if not bad.any():
        return
    index = _first(bad)
    shown = _fmt(limit[index])
    shown = f"{text} = {shown}" if text else shown
    side = "below" if which == "lower" else "above"
    raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])} is {side} its "
                      f"{which} bound {shown}")


def _check_simplex(spec: DataSpec, arr: np.ndarray) -> None:
    """Each vector along the last dim is non-negative and sums to 1 (within TOLERANCE)."""
    negative = arr < 0
    if negative.any():
        index = _first(negative)
        raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])}: not a "
                          "simplex: entries must be >= 0")
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > TOLERANCE
    if off.any():
        index = _first(off)
        where = f"{_row(index)} sums" if index else "it sums"
        raise _fail(spec, f"data '{spec.name}': not a simplex: {where} to "
                          f"{float(sums[index]):.12g} (must be 1 within {TOLERANCE:g})")


def _check_ordered(spec: DataSpec, arr: np.ndarray) -> None:
    """Each vector along the last dim is strictly increasing."""
    if arr.shape[-1] < 2:
        return
    not_rising = ~(np.diff(arr, axis=-1) > 0)
    if not_rising.any():
        index = _first(not_rising)
        after = (*index[:-1], index[-1] + 1)
        raise _fail(spec, f"data '{_at(spec.name, after)}' = {_fmt(arr[after])} is not "
                          f"greater than '{_at(spec.name, index)}' = {_fmt(arr[index])}: "
                          "ordered values must be strictly increasing")


def _check_cholesky_corr(spec: DataSpec, arr: np.ndarray) -> None:
    """The last two dims form a K x K lower-triangular matrix, positive diagonal, unit rows."""
    if arr.shape[-1] != arr.shape[-2]:
        raise _fail(spec, f"data '{spec.name}': a cholesky_corr matrix must be square, got "
                          f"{arr.shape[-2]} x {arr.shape[-1]}")
    upper = np.abs(np.triu(arr, 1)) > TOLERANCE
    if upper.any():
        index = _first(upper)
        raise _fail(spec, f"data '{_at(spec.name, index)}' = {_fmt(arr[index])}: a "
                          "cholesky_corr matrix must be lower-triangular (zero above the "
                          "diagonal)")
    diagonal = np.diagonal(arr, axis1=-2, axis2=-1)
    not_positive = ~(diagonal > 0)
    if not_positive.any():
        index = _first(not_positive)
        full = (*index, index[-1])
        raise _fail(spec, f"data '{_at(spec.name, full)}' = {_fmt(arr[full])}: the diagonal "
                          "of a cholesky_corr matrix must be positive")
    norms = np.sqrt(np.sum(arr * arr, axis=-1))
    off = np.abs(norms - 1.0) > TOLERANCE
    if off.any():
        index = _first(off)
        raise _fail(spec, f"data '{spec.name}': not a cholesky_corr matrix: {_row(index)} "
                          f"has norm {float(norms[index]):.12g} (rows must have norm 1 within "
                          f"{TOLERANCE:g})")
