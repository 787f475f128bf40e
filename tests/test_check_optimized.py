"""Invariant checks are InvariantError, not assert: they hold under `python -O` too.

Checked-mode replays run in a subprocess under -O; a violation planted by an observer
(a corrupted slab counter or anon_vma refcount) must be reported with the invariant's name,
the operation that exposed it and that operation's trace line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TRACES, mmap, parse, touch

from simcore import trace
from simcore.errors import InvariantError
from simcore.machine import Machine
from simcore.slab import ANON_VMA, VMA as VMA_CACHE, Slab

ROOT = Path(__file__).resolve().parent.parent
TRACE = TRACES / "r08_fork_basic.jsonl"    # line 3 touches a (its anon_vma), line 4 maps b

REPLAY = textwrap.dedent("""
    import json, sys
    from simcore import trace
    from simcore.errors import InvariantError
    from simcore.machine import Machine
    from simcore.slab import AVC

    path, plant = sys.argv[1], sys.argv[2]

    def corrupt(m, op):
        if op.line != 3:
            return
        if plant == "refcount":
            m.procs[0].vmas[0].anon_vma.refcount += 1
        elif plant == "slab":
            m.slab.live[AVC] += 1

    m = Machine("eager", check=True)
    m.observers.append(corrupt)
    out = {"optimize": sys.flags.optimize}
    try:
        m.run(trace.load(path))
        out["ok"] = True
    except InvariantError as exc:
        out.update(ok=False, invariant=exc.invariant, op=exc.op, line=exc.line, text=str(exc))
    print(json.dumps(out))
""")


def replay_optimized(plant: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-O", "-c", REPLAY, str(TRACE), plant], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_clean_trace_passes_under_O():
    out = replay_optimized("none")
    assert out == {"optimize": 1, "ok": True}


@pytest.mark.parametrize("plant, invariant", [("refcount", "I5"), ("slab", "slab")])
def test_planted_violation_is_reported_under_O(plant, invariant):
    out = replay_optimized(plant)
    assert out["optimize"] == 1 and out["ok"] is False
    assert out["invariant"] == invariant
    mmap_b = trace.load(TRACE)[2]
    assert mmap_b.line == 4 and (mmap_b.region, mmap_b.pages) == ("b", 4)
    assert out["line"] == 4 and json.loads(out["op"]) == trace.to_json(mmap_b)
    assert out["text"].startswith(f"invariant {invariant} violated after line 4 (")
    assert out["op"] in out["text"]


def test_message_names_invariant_op_and_line():
    exc = InvariantError("leak", "2 folios remain", op='{"op": "exit", "pid": 0}', line=7)
    assert str(exc) == 'invariant leak violated after line 7 ({"op": "exit", "pid": 0}): 2 folios remain'
    assert str(InvariantError("overlap", "VMAs overlap")) == "invariant overlap violated: VMAs overlap"


def test_slab_underflow_raises_outside_checked_mode():
    slab = Slab()
    with pytest.raises(InvariantError, match="anon_vma: freed more objects than allocated") as exc:
        slab.free(ANON_VMA)
    assert exc.value.invariant == "slab" and exc.value.op is None


def test_cow_batch_attaches_the_op_of_a_first_write_it_faults(monkeypatch):
    """Machine.run()'s COW batch faults a first write to a fresh VMA itself
    (CowBatch.add()); an error there names that touch and its line, as the run loop does."""
    from simcore import fault

    def broken(m, vma, lo, hi):
        raise InvariantError("slab", "planted")

    monkeypatch.setattr(fault, "_fault_new_ptes", broken)
    ops = parse(mmap(pages=4), mmap(region="b", pages=4), touch(region="b"), touch())
    m = Machine("eager")
    assert m.policy.batch_cow_faults
    with pytest.raises(InvariantError, match="planted") as exc:
        m.run(ops)
    assert exc.value.line == 3 and json.loads(exc.value.op) == trace.to_json(ops[2])
    assert m.ops_done == 2


@pytest.mark.parametrize("planted, invariant", [
    ("nr", "folio-freed"), ("index", "folio-index"), ("mkind", "folio-kind"),
    ("mapping", "I5"), ("mapcount", "mapcount")])
def test_folio_checks_name_the_vma_that_maps_a_bad_folio(planted, invariant):
    """check_machine()'s folio checks (every VMA's entries at once, then VMA by VMA where
    one fails) raise for a fault planted in a folio of the second of three VMAs, naming
    that VMA.  aaaa bbbb cccc: all written; a folio of b is broken."""
    from simcore.check import check_machine
    ops = parse(mmap(pages=4), mmap(region="b", pages=4), mmap(region="c", pages=4),
                touch(), touch(region="b"), touch(region="c"))
    m = Machine("eager").run(ops)
    check_machine(m)
    a, b, c = m.procs[0].vmas
    fid = int(b.pte[2])
    f = m.folios
    column = getattr(f, planted)
    column[fid] = {"nr": 0, "index": column[fid] + 100, "mkind": 99, "mapping": 10 ** 9,
                   "mapcount": column[fid] + 1}[planted]
    with pytest.raises(InvariantError) as exc:
        check_machine(m)
    assert exc.value.invariant == invariant
    if invariant != "mapcount":            # a count over all folios names no VMA
        assert str(b) in exc.value.message and str(a) not in exc.value.message


def test_apply_attaches_the_op_to_an_error_outside_checked_mode(tmp_path):
    """A consistency check inside an operation (here the slab refusing to go below zero) names
    the operation and its line even without checked mode."""
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in (mmap(pages=4), touch(),
                                                      {"op": "munmap", "pid": 0, "region": "a"})))
    ops = trace.load(path)
    m = Machine("eager").run(ops[:2])
    m.slab.live[VMA_CACHE] = 0                 # planted: the VMA is no longer counted
    with pytest.raises(InvariantError, match="vm_area_struct: freed more") as exc:
        m.apply(ops[2])
    assert exc.value.invariant == "slab" and exc.value.line == 3
    assert json.loads(exc.value.op) == trace.to_json(ops[2])
