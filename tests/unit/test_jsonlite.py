"""jsonlite: the hook's JSON without the json package gives json's answers, and json's errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard import jsonlite

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_dumps_is_json_dumps(value: Any) -> None:
    """Same text as json.dumps: default and compact separators, ASCII or not."""
    assert jsonlite.dumps(value) == json.dumps(value)
    assert jsonlite.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert jsonlite.dumps(value, ascii=False) == json.dumps(value, ensure_ascii=False)


# Indented output (what every --json listing prints): also keys json converts (numbers, bools,
# None), NaN and the infinities, tuples.
keyed = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda items: tuple(items[:1]) + tuple(items))
        | st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text() | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(keyed, st.sampled_from([0, 1, 2, 4]))
def test_dumps_indented_is_json_dumps_indented(value: Any, indent: int) -> None:
    """Same text as json.dumps(indent=N), ASCII or not (json falls back to its Python encoder
    for indented output; jsonlite must not import it)."""
    for ascii in (True, False):
        assert jsonlite.dumps(value, indent=indent, ascii=ascii) == json.dumps(
            value, indent=indent, ensure_ascii=ascii
        )


@given(values, st.sampled_from(["", " ", "\n", " \t\r\n "]))
def test_loads_is_json_loads(value: Any, space: str) -> None:
    """Same value as json.loads, from str and from UTF-8 bytes, around JSON whitespace."""
    text = space + json.dumps(value, ensure_ascii=False) + space
    assert jsonlite.loads(text) == json.loads(text)
    assert jsonlite.loads(text.encode()) == json.loads(text.encode())


def test_loads_takes_what_json_takes() -> None:
    """Constants, a UTF-8 byte-order mark and UTF-16 (json's encodings) all read."""
    assert math.isinf(jsonlite.loads("[Infinity]")[0])
    assert math.isnan(jsonlite.loads(b"NaN"))
    assert jsonlite.loads('{"a": "\\u00e9"}'.encode("utf-16")) == {"a": "é"}
    assert jsonlite.loads(b"\xef\xbb\xbf[1]") == [1]


@pytest.mark.parametrize(
    "data", [b"", b"  ", b"{", b'{"a": 1} x', b"[1,]", b"\xff", "\ufeff[1]", b'"\x01"']
)
def test_loads_fails_as_json_does(data: bytes | str) -> None:
    """Bad input raises json's own error, with json's message."""
    with pytest.raises(ValueError, match=r".") as ours:
        jsonlite.loads(data)
    with pytest.raises(ValueError, match=r".") as theirs:
        json.loads(data)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_dumps_fails_as_json_does_and_recovers() -> None:
    """Unencodable and circular values raise json's errors; the next call is unaffected."""
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonlite.dumps({"a": [object()]})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonlite.dumps(loop)
    shared = [1]
    assert jsonlite.dumps({"a": shared, "b": shared}) == '{"a": [1], "b": [1]}'


def test_loads_fails_as_json_does_before_json_is_imported() -> None:
    """In a fresh interpreter (as in a hook) bad input still raises json's error."""
    probe = (
        "import sys\n"
        "from switchboard import jsonlite\n"
        "assert jsonlite.loads(b'[1]') == [1] and 'json' not in sys.modules\n"
        "try:\n"
        "    jsonlite.loads(b'{not json')\n"
        "except ValueError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == (
        "JSONDecodeError Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"
    )


JSON_VALUES = [
    [],
    {},
    [1, 2.5, 'é\n"\\', None, True, False],
    {"a": [{}], 1: 2, 2.5: [[]], False: 0, None: -0.0},
    [float("nan"), float("inf"), -float("inf"), 10**40, ("t",)],
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_jsonlite_indented_is_json_dumps_indented(value: Any) -> None:
    """``jsonlite.dumps(indent=2)`` writes what ``json.dumps(indent=2)`` writes, ASCII or not."""
    for ascii in (True, False):
        assert jsonlite.dumps(value, indent=2, ascii=ascii) == json.dumps(
            value, indent=2, ensure_ascii=ascii
        )


def test_jsonlite_indented_refuses_what_json_refuses() -> None:
    """Values JSON cannot carry and circular references fail with json's own errors."""
    circle: list[Any] = []
    circle.append(circle)
    for value in ({object(): 1}, [object()], {"a": {1j}}, circle):
        with pytest.raises((TypeError, ValueError)) as expected:
            json.dumps(value, indent=2)
        with pytest.raises(type(expected.value), match=str(expected.value)):
            jsonlite.dumps(value, indent=2)
