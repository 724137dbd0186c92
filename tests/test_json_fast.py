"""corral._json.loads: json.loads's results and errors, without importing json on success."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral._json import loads


def reject(name):
    raise ValueError(name)


def outcome(fn, text):
    try:
        return ("ok", fn(text, parse_constant=reject))
    except ValueError as exc:  # JSONDecodeError included
        return ("error", type(exc).__name__, str(exc))


CASES = ['{}', ' {"a": [1, 2.5, -3e2, true, false, null, "\\u00e9"]} \n', '[]', '"x"', '1', '  ', '',
         '{"a": 1} x', '{"a": 1,}', "{'a': 1}", '[NaN]', '[Infinity]', '{"a": "\\ud800"}', '{"a":1}{"b":2}',
         '\ufeff{}', '{"filesystem": {', '{"a": [{', '{"a": "tab\there"}', '{"a": 1, "a": 2}', '[1e999]', '-0', '{"k": ' * 3 + '1' + '}' * 3]


@pytest.mark.parametrize("text", CASES)
def test_same_as_json_loads(text):
    assert outcome(loads, text) == outcome(json.loads, text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["", " ", "\n\t", "x", ",", "]"]))
def test_generated_documents_agree(value, tail):
    text = json.dumps(value) + tail
    assert outcome(loads, text) == outcome(json.loads, text)


def test_a_valid_document_does_not_import_json():
    code = ("import sys; from corral._json import loads; v = loads('{\"a\": [1, 2.5]}', parse_constant=None); "
            "print(v, 'json' in sys.modules, 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'a': [1, 2.5]} False False"
