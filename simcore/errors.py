"""Named errors of the simulator core.

An :class:`InvariantError` is a broken invariant of the model (I1-I6 of
shared/research/kernel-rmap-spec.md, slab and folio accounting, rmap completeness,
the maple tree's order): a simulator bug, never a user mistake.  Unlike ``assert``
it is raised under ``python -O`` too.
"""
from __future__ import annotations

import json

from .trace import Op, to_json


class InvariantError(Exception):
    """A broken invariant: ``invariant`` is its short name ("I1".."I6", "slab", "mapcount",
    "rmap-complete", "leak", "overlap", ...).  ``Machine.apply`` in checked mode attaches the
    operation (its trace JSON) and its trace line."""

    def __init__(self, invariant: str, message: str, op: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(invariant, message)
        self.invariant = invariant
        self.message = message
        self.op = op
        self.line = line

    def attach(self, op: Op) -> None:
        """Name the op (as trace JSON) and its trace line, unless an op is named already
        (Machine.run()/apply() and the COW batch, for the op that raised)."""
        if self.op is None:
            self.op = json.dumps(op.to_json() if hasattr(op, "to_json") else to_json(op))
            self.line = op.line

    def __str__(self) -> str:
        where = ""
        if self.op is not None:
            where = f" after line {self.line if self.line is not None else '?'} ({self.op})"
        return f"invariant {self.invariant} violated{where}: {self.message}"


class LayoutMismatch(InvariantError):
    """The trace layout (which pages a trace may name, with what protection) and a process's
    VMAs disagree: the simulator's two views of one address space have diverged."""

    def __init__(self, message: str) -> None:
        super().__init__("layout", message)
