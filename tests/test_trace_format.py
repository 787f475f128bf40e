"""Trace format v1: parsing and validity errors name the line."""
from __future__ import annotations

import json

import pytest

from conftest import TRACES
from simcore import trace
from simcore.machine import Machine
from simcore.trace import TraceError


def run(*objs) -> Machine:
    lines = [o if isinstance(o, str) else json.dumps(o) for o in objs]
    return Machine("eager", check=True).run(trace.parse_lines(lines))


MM = {"op": "mmap", "pid": 0, "region": "a", "pages": 8}


def test_comments_blank_lines_and_defaults():
    m = run("# comment", "", "   # indented comment", MM, {"op": "touch", "pid": 0, "region": "a"})
    assert m.counts()["anon_vma"] == 1


def test_round_trip_dumps_parse():
    ops = trace.load(TRACES / "r09_deep_chain_exit_orders.jsonl")
    again = list(trace.parse_lines(trace.dumps(ops).splitlines()))
    assert [trace.to_json(o) for o in again] == [trace.to_json(o) for o in ops]


@pytest.mark.parametrize("lines, message", [
    (["{not json"], "not valid JSON"),
    (["[1, 2]"], "must be a JSON object"),
    ([{"op": "frobnicate", "pid": 0}], "unknown op"),
    ([{"op": "mmap", "pid": 0, "region": "a"}], "needs field(s) pages"),
    ([{**MM, "colour": "red"}], "unknown field 'colour'"),
    ([{**MM, "pages": "8"}], "must be an integer"),
    ([{**MM, "pages": 0}], "must be positive"),
    ([{**MM, "kind": "weird"}], "kind='weird' is not one of"),
    ([{**MM, "kind": "file"}], "needs a 'file' name"),
    ([{**MM, "populate": 1}], "must be a bool"),
    ([{"op": "mremap", "pid": 0, "region": "a"}], "either 'pages'"),
    ([MM, {"op": "touch", "pid": 3, "region": "a"}], "unknown pid 3"),
    ([MM, {"op": "touch", "pid": 0, "region": "b"}], "unknown region 'b'"),
    ([MM, {"op": "touch", "pid": 0, "region": "a", "first": 6, "count": 4}], "outside region"),
    ([MM, {"op": "munmap", "pid": 0, "region": "a", "first": 2, "count": 2},
      {"op": "touch", "pid": 0, "region": "a"}], "covers unmapped pages"),
    ([{**MM, "prot": "r"}, {"op": "touch", "pid": 0, "region": "a"}], "not writable"),
    ([{**MM, "prot": "none"}, {"op": "touch", "pid": 0, "region": "a", "write": False}],
     "not readable"),
    ([MM, {"op": "fork", "pid": 0, "child": 1}, {"op": "fork", "pid": 0, "child": 1}],
     "already used"),
    ([MM, {"op": "fork", "pid": 0, "child": 1}, {"op": "exit", "pid": 1},
      {"op": "touch", "pid": 1, "region": "a"}], "has exited"),
    ([MM, {"op": "munmap", "pid": 0, "region": "a", "first": 7, "count": 1},
      {"op": "mmap", "pid": 0, "region": "b", "pages": 1, "after": "a"}], "last page"),
    ([MM, MM], "already exists"),
    ([MM, {"op": "madvise", "pid": 0, "region": "a", "advice": "dontfork"},
      {"op": "fork", "pid": 0, "child": 1}, {"op": "touch", "pid": 1, "region": "a"}],
     "unknown region 'a' in pid 1"),
    ([MM, {"op": "munmap", "pid": 0, "region": "a", "first": 0, "count": 2},
      {"op": "mremap", "pid": 0, "region": "a", "to": "b"}], "moved range starts, is not mapped"),
    ([{**MM, "kind": "file", "file": "f"}, {"op": "madvise", "pid": 0, "region": "a",
                                             "advice": "wipeonfork"}], "EINVAL"),
])
def test_invalid_traces_name_the_line(lines, message):
    with pytest.raises(TraceError) as err:
        run(*lines)
    assert message in str(err.value)
    assert f"{len(lines)}:" in str(err.value) or "line" in str(err.value)


TOUCH = {"op": "touch", "pid": 0, "region": "a", "count": 2}


@pytest.mark.parametrize("value, message", [
    ({"count": 0}, "count must be positive, got 0"), ({"pid": -1}, "pid must not be negative"),
    ({"pid": True}, "field 'pid' must be an integer, got True"),
    ({"count": 1.5}, "field 'count' must be an integer, got 1.5"),
    ({"region": 3}, "field 'region' must be a str, got 3"),
    ({"count": 2**70}, None),           # json's integer (orjson reads a float): a valid count
])
def test_a_line_shape_seen_before_checks_its_values_alike(value, message):
    """The second line of one shape (its keys, in order) is read by the reader made from
    the first: a bad value is named as on its first reading, the op equals a fresh parse."""
    lines = [json.dumps(TOUCH), json.dumps({**TOUCH, **value})]
    fresh = {**TOUCH, **value, "op": "touch"}
    for text in (lines, [lines[1]]):                   # after the good line, and alone
        if message is None:
            op = list(trace.parse_lines(text))[-1]
            assert op == trace.Touch(**{k: v for k, v in fresh.items() if k != "op"},
                                     line=len(text))
            continue
        with pytest.raises(TraceError, match=f"line {len(text)}: {message}"):
            list(trace.parse_lines(text))
