"""quantizers/jsonmatrix.py: where the row-by-row path applies, and where it leaves the body to the ordinary parse."""

from __future__ import annotations

import sys

import numpy as np
import orjson
import pytest

from quantizers.arrays import parse_2d
from quantizers.jsonmatrix import locate_matrix, split_body

PAD = b'"pad": "' + b"x" * 9000 + b'", '  # above the size under which the ordinary parse is used


@pytest.mark.parametrize("body", [
    b'{"data": [[1,2],[3,4]] , "x": 1}',
    b'{"data": [ [1, 2] ,\n [3,4]\t] }',
    b'{"x": {"y": [1]}, "data":[[1.5e3]]}',
    b'{"data": [[]]}',
])
def test_rows_found(body: bytes) -> None:
    raw = body.replace(b"{", b"{" + PAD, 1)
    split = split_body(raw)
    assert split is not None
    rest, matrix = split
    whole = orjson.loads(raw)
    assert [orjson.loads(raw[a:b]) for a, b in matrix._rows] == whole["data"]
    assert rest == {**whole, "data": None}


@pytest.mark.parametrize("body", [
    b'{"data": [[1,2] x [3]]}',
    b'{"data": [[1,[2]],[3]]}',
    b'{"data": [["a]]"]]}',
    b'{"data": []}',
    b'{"data": [[1],[2]]',
    b'{"data": [[1],[2]\x0c]}',  # a form feed is not JSON whitespace: the ordinary parse refuses it
    b'{"data": [[1],\x0b[2]]}',
    b'{"data": 1}',
])
def test_unusual_bodies_go_the_ordinary_way(body: bytes) -> None:
    assert split_body(body.replace(b"{", b"{" + PAD, 1)) is None


def test_the_body_is_let_go_once_converted() -> None:
    """The request's largest buffer, the body, is referenced by the matrix only until its values are in the array;
    converting again (a serializer's second run over the same body) gives the same values without the body."""
    rows = np.arange(3000, dtype=np.float32).reshape(1000, 3) / 8
    raw = orjson.dumps({"data": rows.tolist(), "x": 1})
    held = sys.getrefcount(raw)
    rest, matrix = split_body(raw) or pytest.fail("the fast path applies")
    assert sys.getrefcount(raw) == held + 1
    first = parse_2d(matrix)
    assert sys.getrefcount(raw) == held
    np.testing.assert_array_equal(first, rows)
    np.testing.assert_array_equal(parse_2d(matrix), rows)
    assert rest == {"data": None, "x": 1}


@pytest.mark.parametrize(("value", "numbers_only"), [
    ("-1.5e-3", True), ("7", True), ("2E+5", True), ("true", False), ("false", False), ("null", False),
    ('"1"', False), ('{"a": 1}', False),
])
def test_a_matrix_of_numbers_only_is_told_apart(value: str, numbers_only: bool) -> None:
    """The row-by-row path skips the type check of every value only when the matrix holds nothing but numbers."""
    raw = b'{"data": [[1, 2],\n [3, ' + value.encode() + b"]], " + PAD[:-2] + b"}"
    matrix = locate_matrix(raw)
    assert matrix is not None
    assert matrix.numbers_only is numbers_only
