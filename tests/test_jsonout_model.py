"""front.jsonout.dumps against json.dumps(indent=2, default=str): the same text for any
JSON-like value (nested containers, every scalar type, odd keys, non-ASCII, NaN, objects
that only `default` can turn into JSON)."""
from __future__ import annotations

import json
import math
from decimal import Decimal
from enum import IntEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portscope.front.jsonout import dumps


class Level(IntEnum):
    LOW = 1


def _json(o):
    return json.dumps(o, indent=2, sort_keys=False, default=str)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(), st.just(Level.LOW), st.decimals(allow_nan=False).map(Decimal),
                    st.sampled_from([frozenset(), ValueError("x"), b"raw"]))
keys = st.one_of(st.text(), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.tuples(inner, inner),
                                                       st.dictionaries(keys, inner, max_size=5)),
                      max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(values)
def test_same_text_as_json(o):
    assert dumps(o) == _json(o)


def test_fixed_cases():
    for o in ({}, [], (), "", {"a": []}, {"a": {}}, [[], [{}]], math.nan, -math.inf, "é\u2028\x00\"\\",
              {1: "int key", 2.5: "float key", True: "bool", None: "none"}, {"nested": {"deeper": [1, [2, [3]]]}}):
        assert dumps(o) == _json(o), o


def test_bad_key_is_a_type_error_as_in_json():
    with pytest.raises(TypeError):
        json.dumps({(1, 2): 0}, indent=2)
    with pytest.raises(TypeError):
        dumps({(1, 2): 0})
