"""Data loading turns JSON/CSV/NPZ files and dicts into checked arrays (LANGUAGE.md rule 24)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.data import DataSpec, load_data, unused_names
from runtime.data_files import read_data_file
from runtime.errors import BgmRuntimeError, DataError

VALIDATION = Path("/work/shared/validation")


def spec(name: str, base: str = "real", *dims: Any, **kw: Any) -> DataSpec:
    """Shorthand: `spec("y", "real", "N")` is `data y: real[N]`."""
    return DataSpec(name, base, tuple(dims), **kw)


def N_specs(*vectors: str, size: str = "N") -> list[DataSpec]:
    """`data N: int` followed by `data v: real[N]` for each name."""
    return [spec(size, "int", lower=0)] + [spec(v, "real", size) for v in vectors]


def error(source: Any, specs: list[DataSpec], **kw: Any) -> str:
    """The DataError message load_data raises (the test fails if it does not raise)."""
    with pytest.raises(DataError) as info:
        load_data(source, specs, **kw)
    return str(info.value)


EIGHT = [spec("J", "int", lower=0, where="eight.bgm:2"), spec("y", "real", "J"),
         spec("sigma", "real", "J", lower=0, where="eight.bgm:4")]

VALIDATION_SPECS: dict[str, list[DataSpec]] = {
    "eight_schools-eight_schools_noncentered": EIGHT,
    "sblrc-blr": [spec("N", "int", lower=0), spec("D", "int", lower=0),
                  spec("X", "real", "N", "D"), spec("y", "real", "N")],
    "nes2000-nes": N_specs("partyid7", "real_ideo", "race_adj", "educ1", "gender", "income")
    + [spec("age_discrete", "int", "N", lower=1, upper=4)],
    "kidiq-kidscore_momiq": N_specs("kid_score", "mom_iq"),
    "earnings-logearn_height": N_specs("earn", "height"),
    "mesquite-logmesquite_logvolume": N_specs("weight", "diam1", "diam2", "canopy_height"),
    "kilpisjarvi_mod-kilpisjarvi": N_specs("x", "y")
    + [spec(n, "real") for n in ("pmualpha", "psalpha", "pmubeta")]
    + [spec("psbeta", "real", lower=0)],
    "arma-arma11": N_specs("y", size="T"),
    "low_dim_gauss_mix-low_dim_gauss_mix": N_specs("y"),
    "gp_pois_regr-gp_regr": N_specs("x", "y"),
}


# --- the validation data sets ---------------------------------------------------------


def test_every_validation_data_set_has_specs() -> None:
    assert {p.parent.name for p in VALIDATION.glob("*/data.json")} == set(VALIDATION_SPECS)


@pytest.mark.parametrize("name", sorted(VALIDATION_SPECS))
def test_validation_data_loads_with_declared_shapes_and_dtypes(name: str) -> None:
    path = VALIDATION / name / "data.json"
    raw = json.loads(path.read_text())
    specs = VALIDATION_SPECS[name]
    data = load_data(path, specs)
    assert list(data) == [s.name for s in specs]
    for s in specs:
        value = data[s.name]
        if not s.dims:
            assert type(value) is (int if s.base == "int" else float)
            assert value == raw[s.name]
            continue
        shape = tuple(data[d] for d in s.dims)
        assert value.shape == shape
        assert value.dtype == (np.int64 if s.base == "int" else np.float64)
        assert value.flags.c_contiguous
        np.testing.assert_array_equal(value, np.array(raw[s.name], dtype=value.dtype))
    info = json.loads((VALIDATION / name / "info.json").read_text())
    unused = {k for k, v in info["data_fields"].items() if "unused" in v}
    assert unused_names(read_data_file(path), specs) == sorted(unused)


def test_eight_schools_values() -> None:
    data = load_data(VALIDATION / "eight_schools-eight_schools_noncentered" / "data.json", EIGHT)
    assert data["J"] == 8
    np.testing.assert_array_equal(data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(data["sigma"], [15, 10, 16, 11, 9, 11, 10, 18])


def test_sblrc_design_matrix_is_rows_of_the_json_lists() -> None:
    path = VALIDATION / "sblrc-blr" / "data.json"
    raw = json.loads(path.read_text())
    data = load_data(path, VALIDATION_SPECS["sblrc-blr"])
    assert (data["N"], data["D"]) == (100, 5)
    assert data["X"].shape == (100, 5)
    assert data["X"][2, 4] == raw["X"][2][4]


def test_nes_int_column_is_int64_within_bounds() -> None:
    data = load_data(VALIDATION / "nes2000-nes" / "data.json", VALIDATION_SPECS["nes2000-nes"])
    assert data["age_discrete"].dtype == np.int64
    assert set(np.unique(data["age_discrete"])) <= {1, 2, 3, 4}


def test_unused_names_are_sorted_extras() -> None:
    path = VALIDATION / "kidiq-kidscore_momiq" / "data.json"
    raw = read_data_file(path)
    assert unused_names(raw, VALIDATION_SPECS["kidiq-kidscore_momiq"]) == [
        "mom_hs", "mom_hs_new", "mom_iq_new"]
    data = load_data(path, VALIDATION_SPECS["kidiq-kidscore_momiq"])
    assert "mom_hs" not in data


# --- one test per kind of error ---------------------------------------------------------


def test_missing_name_says_file_and_declaration(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"J": 2, "y": [1, 2]}))
    message = error(path, EIGHT)
    assert message == f"data 'sigma' (eight.bgm:4) is missing from {path}"
    assert "d.json" in message
    assert error({"J": 2}, EIGHT[:2]) == "data 'y' is missing from the data"


def test_wrong_length_shows_symbolic_and_concrete_shape() -> None:
    message = error({"J": 8, "y": [1.0] * 7, "sigma": [1.0] * 8}, EIGHT)
    assert message == "data 'y': expected shape [J] = [8], got [7]"


def test_literal_dims_are_shown_once_and_rank_is_checked() -> None:
    assert error({"X": [1, 2, 3]}, [spec("X", "real", 3, 2)]) == (
        "data 'X': expected shape [3, 2], got [3]")
    assert "got a scalar (3)" in error({"X": 3}, [spec("X", "real", 3)])


def test_scalar_given_as_list() -> None:
    message = error({"J": [8, 8, 8]}, EIGHT)
    assert message == ("data 'J': expected a scalar, got a list of length 3 "
                       "(declared at eight.bgm:2)")
    assert "an array of shape [3]" in error({"J": np.arange(3)}, EIGHT)


@pytest.mark.parametrize(("bad", "word"), [(math.nan, "NaN"), (math.inf, "Inf"),
                                           (-math.inf, "-Inf")])
def test_non_finite_values_name_the_index(bad: float, word: str) -> None:
    y = [1.0, 2.0, bad, bad]
    assert error({"J": 4, "y": y, "sigma": [1] * 4}, EIGHT) == (
        f"data 'y[3]': {word} is not allowed")


def test_non_finite_in_json_file_literal(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"J": 2, "y": [1.0, NaN], "sigma": [1, Infinity]}')
    assert error(path, EIGHT) == "data 'y[2]': NaN is not allowed"


def test_null_is_a_missing_value() -> None:
    message = error({"J": 3, "y": [1.0, None, 2.0], "sigma": [1, 1, 1]}, EIGHT)
    assert message == "data 'y[2]': a missing value (null/None) is not allowed"
    assert "data 'J': a missing value" in error({"J": None}, EIGHT)


def test_string_element_of_a_matrix() -> None:
    x = [[1.0, 2.0], ["abc", 4.0]]
    assert error({"x": x}, [spec("x", "real", 2, 2)]) == (
        "data 'x[2, 1]': expected a number, got the string \"abc\"")


def test_numeric_strings_are_still_strings() -> None:
    assert "got the string \"1.5\"" in error({"x": ["1.5"]}, [spec("x", "real", 1)])
    assert "got the string" in error({"x": np.array(["1"])}, [spec("x", "real", 1)])


def test_other_non_numbers() -> None:
    assert "data 'x[2]': expected a number, got a JSON object" in error(
        {"x": [1, {"a": 1}]}, [spec("x", "real", 2)])
    assert "data 'x[1]': complex numbers are not allowed" in error(
        {"x": [1j, 2]}, [spec("x", "real", 2)])


def test_non_integral_int() -> None:
    message = error({"n": [1, 2, 3, 2.5]}, [spec("n", "int", 4)])
    assert message == "data 'n[4]' = 2.5: expected an integer"


def test_integral_reals_and_booleans_convert_to_int() -> None:
    data = load_data({"n": [1.0, 3.0], "b": [True, False], "k": 4.0, "r": [True, 2]},
                     [spec("n", "int", 2), spec("b", "int", 2), spec("k", "int"),
                      spec("r", "real", 2)])
    assert data["n"].dtype == np.int64 and data["n"].tolist() == [1, 3]
    assert data["b"].tolist() == [1, 0]
    assert data["k"] == 4 and type(data["k"]) is int
    assert data["r"].dtype == np.float64 and data["r"].tolist() == [1.0, 2.0]


def test_integers_beyond_64_bits() -> None:
    assert "too large for a 64-bit integer" in error({"n": [1, 2**70]}, [spec("n", "int", 2)])
    assert "data 'n[2]' = 1e+300: too large" in error({"n": [1, 1e300]}, [spec("n", "int", 2)])
    assert load_data({"r": [1, 2**70]}, [spec("r", "real", 2)])["r"][1] == 2.0**70


def test_ragged_rows() -> None:
    message = error({"X": [[1, 2, 3], [4, 5, 6], [7, 8]]}, [spec("X", "real", 3, 3)])
    assert message == "data 'X': ragged array: row 3 has length 2, row 1 has length 3"


def test_ragged_deeper_and_mixed_depth() -> None:
    cube = [[[1, 2], [3, 4]], [[5, 6], [7]]]
    assert error({"A": cube}, [spec("A", "real", 2, 2, 2)]) == (
        "data 'A': ragged array: A[2, 2] has length 1, A[1, 1] has length 2")
    assert "row 2 is a single value, row 1 has length 2" in error(
        {"A": [[1, 2], 3]}, [spec("A", "real", 2, 2)])


def test_lower_and_upper_bounds() -> None:
    message = error({"J": 3, "y": [0, 0, 0], "sigma": [1, -1.0, -2.0]}, EIGHT)
    assert message == ("data 'sigma[2]' = -1.0 is below its lower bound 0 "
                       "(declared at eight.bgm:4)")
    unit = [spec("p", "real", 3, lower=0, upper=1)]
    assert error({"p": [0.0, 1.0, 1.5]}, unit) == "data 'p[3]' = 1.5 is above its upper bound 1"
    assert load_data({"p": [0, 1, 0.5]}, unit)["p"].tolist() == [0, 1, 0.5]  # inclusive


def test_bounds_from_other_data_and_expressions() -> None:
    def hi(data: dict[str, Any]) -> int:
        return data["V"] - 1

    hi.text = "V - 1"  # type: ignore[attr-defined]
    specs = [spec("V", "int"), spec("L", "real"), spec("t", "int", 3, lower="L", upper=hi)]
    assert load_data({"V": 5, "L": 1, "t": [1, 4, 2]}, specs)["t"].tolist() == [1, 4, 2]
    assert error({"V": 5, "L": 1, "t": [1, 5, 2]}, specs) == (
        "data 't[2]' = 5 is above its upper bound V - 1 = 4")
    assert error({"V": 5, "L": 2.5, "t": [3, 2, 2]}, specs) == (
        "data 't[2]' = 2 is below its lower bound L = 2.5")
    per_element = [spec("lo", "real", 2), spec("x", "real", 2, lower="lo")]
    assert "data 'x[2]' = 0.0 is below its lower bound lo = 1.0" in error(
        {"lo": [0, 1], "x": [0, 0]}, per_element)


def test_simplex() -> None:
    specs = [spec("p", "real", 2, 3, constraint="simplex")]
    good = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    assert load_data({"p": good}, specs)["p"].shape == (2, 3)
    message = error({"p": [[0.2, 0.3, 0.5], [0.3, 0.3, 0.3]]}, specs)
    assert message.startswith("data 'p': not a simplex: row 2 sums to 0.9")
    assert error({"p": [0.5, 0.6]}, [spec("p", "real", 2, constraint="simplex")]).startswith(
        "data 'p': not a simplex: it sums to 1.1")
    assert error({"p": [[0.5, 0.5, 0.0], [1.2, -0.2, 0.0]]}, specs) == (
        "data 'p[2, 2]' = -0.2: not a simplex: entries must be >= 0")


def test_ordered() -> None:
    specs = [spec("mu", "real", 4, constraint="ordered")]
    assert load_data({"mu": [-1, 0, 2, 3]}, specs)["mu"].tolist() == [-1, 0, 2, 3]
    assert error({"mu": [-1, 0, 0, 3]}, specs) == (
        "data 'mu[3]' = 0.0 is not greater than 'mu[2]' = 0.0: "
        "ordered values must be strictly increasing")


def test_cholesky_corr() -> None:
    specs = [spec("L", "real", 3, 3, constraint="cholesky_corr")]
    corr = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    chol = np.linalg.cholesky(corr)
    np.testing.assert_array_equal(load_data({"L": chol}, specs)["L"], chol)
    upper = chol.copy()
    upper[0, 2] = 0.1
    assert error({"L": upper}, specs).startswith(
        "data 'L[1, 3]' = 0.1: a cholesky_corr matrix must be lower-triangular")
    negative = chol.copy()
    negative[1] *= -1
    assert error({"L": negative}, specs).startswith(
        "data 'L[2, 2]' = -0.866")
    assert error({"L": chol * 0.9}, specs).startswith(
        "data 'L': not a cholesky_corr matrix: row 1 has norm 0.9")


def test_negative_size() -> None:
    specs = [spec("N", "int"), spec("y", "real", "N", where="m.bgm:2")]
    assert error({"N": -1, "y": []}, specs) == (
        "data 'N' = -1 is negative, but it is a size of 'y' (m.bgm:2)")


def test_size_expressions() -> None:
    def k_plus_one(data: dict[str, Any]) -> int:
        return data["K"] + 1

    k_plus_one.text = "K + 1"  # type: ignore[attr-defined]
    specs = [spec("K", "int"), spec("c", "real", "K", k_plus_one)]
    assert load_data({"K": 2, "c": [[1, 2, 3], [4, 5, 6]]}, specs)["c"].shape == (2, 3)
    assert error({"K": 2, "c": [[1, 2], [3, 4]]}, specs) == (
        "data 'c': expected shape [K, K + 1] = [2, 3], got [2, 2]")
    untitled = [spec("K", "int"), spec("c", "real", lambda d: d["K"] - 3)]
    assert "data 'c': its size -1 is negative" in error({"K": 2, "c": []}, untitled)
    assert "needs data 'K', which was not given" in error(
        {"c": [1]}, untitled, optional=["K"])


def test_empty_arrays_fit_zero_sizes() -> None:
    data = load_data({"N": 0, "D": 3, "X": []}, [spec("N", "int"), spec("D", "int"),
                                                 spec("X", "real", "N", "D")])
    assert data["X"].shape == (0, 3) and data["X"].dtype == np.float64


def test_torch_tensors_and_numpy_scalars_are_accepted() -> None:
    data = load_data({"J": np.int32(2), "y": torch.tensor([1.5, 2.5]),
                      "sigma": np.array([1, 2], dtype=np.uint8)}, EIGHT)
    assert data["J"] == 2 and type(data["J"]) is int
    assert data["y"].tolist() == [1.5, 2.5] and data["sigma"].dtype == np.float64


def test_result_does_not_alias_the_input() -> None:
    y = np.array([1.0, 2.0])
    data = load_data({"J": 2, "y": y, "sigma": y}, EIGHT)
    data["y"][0] = 99.0
    assert y[0] == 1.0


def test_errors_are_runtime_errors() -> None:
    assert issubclass(DataError, BgmRuntimeError)


def test_malformed_specs_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        DataSpec("x", "float")
    with pytest.raises(ValueError):
        DataSpec("x", "real", (3,), constraint="positive")
    with pytest.raises(ValueError):
        DataSpec("L", "real", (3,), constraint="cholesky_corr")
    with pytest.raises(TypeError):
        DataSpec("x", "real", (2.5,))
    assert DataSpec("x", "real", ["N"]).dims == ("N",)  # type: ignore[arg-type]


# --- size inference and optional names -------------------------------------------------


def test_size_inferred_from_array_length() -> None:
    data = load_data({"y": [1, 2, 3]}, N_specs("y"))
    assert list(data) == ["N", "y"] and data["N"] == 3 and type(data["N"]) is int
    matrix = load_data({"X": np.zeros((4, 2))}, [spec("N", "int"), spec("D", "int"),
                                                 spec("X", "real", "N", "D")])
    assert (matrix["N"], matrix["D"]) == (4, 2)


def test_inferred_sizes_that_disagree_name_both_arrays() -> None:
    message = error({"x": [1, 2, 3], "y": [1, 2]}, N_specs("x", "y"))
    assert "data 'N' is missing from the data" in message
    assert "'x' along dim 1 is 3" in message and "'y' along dim 1 is 2" in message


def test_given_size_is_checked_not_overridden() -> None:
    assert error({"N": 4, "y": [1, 2, 3]}, N_specs("y")) == (
        "data 'y': expected shape [N] = [4], got [3]")


def test_inferred_size_still_obeys_its_bounds() -> None:
    specs = [spec("N", "int", lower=1), spec("y", "real", "N")]
    message = error({"y": []}, specs)
    assert message.startswith("data 'N' = 0 is below its lower bound 1")
    assert "inferred as the length of 'y' along dim 1" in message


def test_optional_names_may_be_missing() -> None:
    data = load_data({"N": 3}, N_specs("y"), optional=["y"])
    assert data == {"N": 3}
    assert error({}, N_specs("y"), optional=["y"]) == "data 'N' is missing from the data"
    inferred = load_data({"x": [1.0, 2.0]}, N_specs("x", "y"), optional=["y"])
    assert inferred["N"] == 2 and "y" not in inferred
    assert error({"y": 1.0}, N_specs("y"), optional=["N"]) == (
        "data 'y': its size 'N' is not available (data 'N' was not given)")


# --- file formats -----------------------------------------------------------------------


def test_csv_columns_and_matrix_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,X[1],X[2],X[3],g,note\n"
                    "1.5,1,2,3,1,a\n"
                    "2.5,4,5,6.5,2,b\n")
    raw = read_data_file(path)
    assert raw["X"].shape == (2, 3)
    specs = [spec("N", "int"), spec("K", "int"), spec("y", "real", "N"),
             spec("X", "real", "N", "K"), spec("g", "int", "N", lower=1)]
    data = load_data(path, specs)
    assert (data["N"], data["K"]) == (2, 3)
    np.testing.assert_array_equal(data["X"], [[1, 2, 3], [4, 5, 6.5]])
    assert data["g"].dtype == np.int64 and data["g"].tolist() == [1, 2]
    assert unused_names(raw, specs) == ["note"]


def test_csv_dot_names_and_higher_rank(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("A.1.1,A.1.2,A.2.1,A.2.2\n1,2,3,4\n5,6,7,8\n")
    data = load_data(path, [spec("A", "int", 2, 2, 2)])
    assert data["A"].tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]


def test_csv_bad_cells_are_reported_by_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,X[1],X[2]\n1,1,1\n2,1,oops\n3,,1\n")
    specs = [spec("N", "int"), spec("y", "real", "N"), spec("X", "real", "N", 2)]
    assert error(path, specs) == "data 'X[2, 2]': expected a number, got the string \"oops\""
    path.write_text("y\n1\n\n2\nNA\n")
    assert error(path, specs[:2]) == "data 'y[3]': expected a number, got the string \"NA\""
    path.write_text("y,z\n1,2\n,3\n")
    assert error(path, specs[:2]) == "data 'y[2]': expected a number, got an empty value"


def test_csv_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,z\n1,2\n3\n")
    with pytest.raises(DataError, match="line 3: 1 fields, but the header has 2"):
        read_data_file(path)
    path.write_text("X[1],X[3]\n1,2\n")
    with pytest.raises(DataError, match=r"column 'X\[2\]' is missing"):
        read_data_file(path)
    path.write_text("X[1],X.1\n1,2\n")
    with pytest.raises(DataError, match="appears twice"):
        read_data_file(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_data_file(path)


def test_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    X = np.arange(6.0).reshape(3, 2)
    np.savez(path, N=np.array(3), X=X, k=np.array([1, 2, 3], dtype=np.int32), s=np.array(0.5))
    specs = [spec("N", "int"), spec("X", "real", "N", 2), spec("k", "int", "N"),
             spec("s", "real")]
    data = load_data(path, specs)
    assert data["N"] == 3 and type(data["N"]) is int
    assert data["s"] == 0.5 and type(data["s"]) is float
    np.testing.assert_array_equal(data["X"], X)
    assert data["k"].dtype == np.int64


def test_npz_refuses_pickles(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([1, "a", None], dtype=object))
    with pytest.raises(DataError, match="object arrays are not loaded"):
        read_data_file(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_data_file(tmp_path / "nope.json")
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(DataError, match=r"unknown format '\.txt'"):
        load_data(tmp_path / "d.txt", [])
    bad = tmp_path / "bad.json"
    bad.write_text('{"y": [1, 2,]}')
    with pytest.raises(DataError, match="not valid JSON: .* line 1"):
        read_data_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="must hold a JSON object"):
        read_data_file(bad)
    bad.write_text('{"y": 1, "y": 2}')
    with pytest.raises(DataError, match="'y' appears twice"):
        read_data_file(bad)


def test_million_elements_are_checked_quickly() -> None:
    y = np.random.default_rng(0).normal(size=1_000_000)
    y[-1] = np.nan
    start = time.perf_counter()
    assert error({"y": y}, N_specs("y")) == "data 'y[1000000]': NaN is not allowed"
    y[-1] = 0.0
    assert load_data({"y": y.tolist()}, N_specs("y"))["N"] == 1_000_000
    assert time.perf_counter() - start < 2.0


# --- property: what is written is what is read ------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
reals = hnp.arrays(np.float64, shapes, elements=st.floats(allow_nan=False, allow_infinity=False))
ints = hnp.arrays(np.int64, shapes, elements=st.integers(-(2**62), 2**62))


@settings(max_examples=40, deadline=None, database=None)
@given(array=st.one_of(reals, ints))
def test_json_and_npz_round_trip(array: np.ndarray, tmp_path_factory: pytest.TempPathFactory
                                 ) -> None:
    folder = tmp_path_factory.mktemp("roundtrip")
    base = "int" if array.dtype == np.int64 else "real"
    specs = [spec("x", base, *array.shape)]
    (folder / "d.json").write_text(json.dumps({"x": array.tolist()}))
    np.savez(folder / "d.npz", x=array)
    for name in ("d.json", "d.npz"):
        value = load_data(folder / name, specs)["x"]
        if array.ndim == 0:
            assert type(value) is (int if base == "int" else float)
            assert value == array.item()
        else:
            assert value.dtype == array.dtype and value.shape == array.shape
            np.testing.assert_array_equal(value, array)
