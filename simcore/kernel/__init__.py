"""Run traces on the host kernel and count the objects attributable to them.

Public API:

* :func:`measure` - trace minus control counts of ``vm_area_struct``,
  ``anon_vma`` and ``anon_vma_chain`` (plus extras), repeated and checked.
* :func:`compile_trace` - trace -> :class:`Program` of executor commands.
* :class:`Tracefs` - context manager for a counting tracefs instance.
* :func:`unavailable_reason` - why the kernel path cannot run here, or None.
* :class:`KernelError` - every failure except an invalid trace (``TraceError``).
"""
from ..slab import CACHES
from .compile import Command, Program, compile_trace
from .harness import build_executor, measure, unavailable_reason
from .tracefs import Counts, KernelError, Tracefs, parse_trace

KernelUnavailable = KernelError

__all__ = ["CACHES", "Command", "Counts", "KernelError", "KernelUnavailable", "Program",
           "Tracefs", "build_executor", "compile_trace", "measure", "parse_trace",
           "unavailable_reason"]
