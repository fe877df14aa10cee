"""quantizers/jsonmatrix.py: where the row-by-row path applies, and where it leaves the body to the ordinary parse."""

from __future__ import annotations

import orjson
import pytest

from quantizers.jsonmatrix import split_body

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
