"""Shared settings and checks of the fuzz suite (Hypothesis).

`make test` runs a fixed-seed profile of a few hundred examples in all; JA_FUZZ=long runs many more.
"""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_LONG = os.environ.get("JA_FUZZ", "") == "long"


def fuzz_settings(examples: int):
    """Fixed seed (derandomize) so a CI failure reproduces; no deadline (timing is not what is tested)."""
    return settings(max_examples=examples * (20 if _LONG else 1), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# Numbers users (and API clients) can send to a float input.
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-300, 1e300, -1.0]),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(float),
)

# Separators and nothing else: a list input emptied by hand ("," / " , ,, ").
separators_only = st.from_regex(r"[ ,;\t\n]{1,30}", fullmatch=True)

# Unpaired UTF-16 surrogates, as JSON carries them ("\ud800"; half an emoji cut by a length limit): Python keeps
# them in str, text encoders refuse them.
with_surrogates = st.tuples(st.text(max_size=20), st.integers(min_value=0xD800, max_value=0xDFFF).map(chr),
                            st.text(max_size=20)).map("".join)

# Multi-megabyte values (1 to 3 MiB of one repeated unit), as an API client can send.
megabytes = st.tuples(st.sampled_from(["a", ",", "9", "1,", "cat, ", " ", "\ud800", "#1,"]),
                      st.integers(min_value=1, max_value=3)).map(lambda t: t[0] * ((t[1] << 20) // len(t[0])))

# Text users type into string inputs: anything, number-like strings, very long digit runs, separators only,
# surrogates and multi-megabyte values.
any_text = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[0-9,\- #a-z]{0,40}", fullmatch=True),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: "1," * n),
    separators_only,
    with_surrogates,
    megabytes,
)


def check_named(exc: BaseException, node: str, inputs) -> None:
    """An error a user may see: a ValueError naming the node and one of `inputs`, short enough to read."""
    from joint_attention_pack.nodes.common import DISPLAY_NAMES

    assert isinstance(exc, ValueError), f"{type(exc).__name__}: {exc}"
    node = DISPLAY_NAMES.get(node, node)  # errors name a node as users see it
    pattern = rf"^\[{re.escape(node)}\] input '({'|'.join(map(re.escape, inputs))})': "
    assert re.match(pattern, str(exc)), str(exc)[:500]
    assert len(str(exc)) < 1200, str(exc)[:200]
