"""One hypothesis strategy for damaged JSON files, shared by the fault tests of the cache
manifest, the SAE cfg.json and the run folder's cfg.json."""

import json
from collections.abc import Callable

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
"""Arbitrary JSON values (NaN and infinities included: Python's json writes them)."""

KINDS = ("bytes", "json", "truncate", "flip", "replace", "delete")


def json_paths(value, prefix: tuple = ()) -> list[tuple]:
    """Every key and list index inside a parsed JSON value, as paths."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    return [p for key, child in items for p in [(*prefix, key), *json_paths(child, (*prefix, key))]]


@st.composite
def damaged_json(
    draw,
    text: bytes,
    kinds: tuple[str, ...] = KINDS,
    paths: Callable[[object], list[tuple]] = json_paths,
) -> tuple[str, bytes]:
    """(what was done, the damaged bytes) for the JSON file `text`: random bytes, arbitrary
    JSON, a truncation, one flipped byte, or the right JSON with the value at one of
    `paths(parsed)` replaced by arbitrary JSON or deleted."""
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=40))
    if kind == "json":
        return kind, json.dumps(draw(json_values)).encode()
    if kind == "truncate":
        return kind, text[: draw(st.integers(0, len(text.rstrip()) - 1))]
    if kind == "flip":
        at, mask = draw(st.integers(0, len(text) - 1)), draw(st.integers(1, 255))
        return kind, text[:at] + bytes([text[at] ^ mask]) + text[at + 1 :]
    parsed = json.loads(text)
    *parents, key = draw(st.sampled_from(paths(parsed)))
    node = parsed
    for p in parents:
        node = node[p]
    if kind == "delete":
        del node[key]
    else:
        node[key] = draw(json_values)
    return f"{kind} {'.'.join(str(p) for p in [*parents, key])}", json.dumps(parsed).encode()
