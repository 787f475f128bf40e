"""Trace format v2 (docs/trace-format-v2.md): recordings of real process trees.

A v2 file is JSON Lines, optionally gzip-compressed (detected by content: the gzip
magic ``1f 8b``, never by the file name).  Line 1 is the header
``{"format": "anonsim-trace", "version": 2, ...}``, then one operation per line in
the order the kernel performed them, then the footer ``{"op": "end", ...}``.  A file
without its footer is truncated and rejected.

:func:`open_writer` streams lines to a temporary name and renames it into place only
in :meth:`Writer.commit`, so an interrupted recording never leaves a file that looks
complete.  :func:`read` yields the header, every operation and the footer, and raises
:class:`trace.TraceError` naming the line for anything malformed.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Iterator

import orjson

from .trace import TraceError

FORMAT = "anonsim-trace"
VERSION = 2
GZIP_MAGIC = b"\x1f\x8b"

# op -> required fields (besides "op"); other fields are optional (see the doc)
OPS: dict[str, tuple[str, ...]] = {
    "mmap": ("pid", "addr", "len", "prot", "flags", "ret"),
    "munmap": ("pid", "addr", "len", "ret"),
    "mprotect": ("pid", "addr", "len", "prot", "ret"),
    "mremap": ("pid", "addr", "old_len", "new_len", "flags", "ret"),
    "brk": ("pid", "addr", "ret"),
    "madvise": ("pid", "addr", "len", "advice", "ret"),
    "process_madvise": ("pid", "advice", "ret"),
    "mlock": ("pid", "addr", "len", "ret"),
    "munlock": ("pid", "addr", "len", "ret"),
    "mlockall": ("pid", "flags", "ret"),
    "munlockall": ("pid", "ret"),
    "shmget": ("pid", "key", "size", "flags", "ret"),
    "shmat": ("pid", "shmid", "addr", "flags", "ret"),
    "shmdt": ("pid", "addr", "ret"),
    "memfd_create": ("pid", "flags", "ret"),
    "fork": ("pid", "child", "kind"),
    "exec_begin": ("pid",),
    "exec": ("pid", "ret"),
    "exit": ("pid", "tid"),
    "exit_mmap": ("pid",),
    "fault": ("pid", "addr", "write", "user"),
    "other": ("pid", "name", "ret"),
}
NEED = {op: frozenset(fields) for op, fields in OPS.items()}
FORK_KINDS = ("fork", "vm", "thread")


def is_v2(path: str | Path) -> bool:
    """True when ``path`` starts like a v2 file (gzip or a v2 header line)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    return head[:2] == GZIP_MAGIC or head.lstrip().startswith(b'{"format": "anonsim-trace"')


class Writer:
    """Streams v2 lines to ``<path>.part-<pid>``; :meth:`commit` renames it to ``path``."""

    def __init__(self, path: str | Path, header: dict, compress: bool = True) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part-{os.getpid()}")
        raw = open(self.tmp, "wb")
        self._fh = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if compress else raw
        self._raw = raw
        self.lines = 0
        self.write({"format": FORMAT, "version": VERSION, **header})

    def write(self, obj: dict) -> None:
        self._fh.write(json.dumps(obj, separators=(", ", ": ")).encode() + b"\n")
        self.lines += 1

    def commit(self, footer: dict) -> None:
        self.write({"op": "end", **footer})
        self._fh.close()
        self._raw.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for fh in (self._fh, self._raw):
            try:
                fh.close()
            except OSError:
                pass
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


def _data(path: Path) -> tuple[bytes, int | None]:
    """The file's text, gunzipped if it starts with the gzip magic; -> (text, None), or
    (the text decompressed so far, compressed bytes read) when the compressed data is
    corrupt or ends early (the caller names the line where it broke off)."""
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw, None
    out, pos = [], 0
    while pos < len(raw):                   # one gzip member after another
        d = zlib.decompressobj(wbits=31)    # gzip wrapper: header and CRC-32/size checked
        try:
            out.append(d.decompress(raw[pos:]))
        except zlib.error:
            return b"".join(out), pos
        if not d.eof:                       # ended before the end-of-stream marker
            out.append(d.flush())
            return b"".join(out), len(raw)
        pos = len(raw) - len(d.unused_data)
    return b"".join(out), None


def _corrupt(path: Path, lines: list[bytes], at: int) -> TraceError:
    return TraceError(len(lines), f"corrupt compressed data after byte {at} "
                                  f"(the gzip stream is damaged or cut short)", str(path))


def _parse(path: Path, lines: list[bytes]) -> list:
    """All lines as JSON values: one orjson call over the whole file (orjson, a C parser,
    reads a recording about twice as fast as the json module line by line); when that
    fails, the first line that does not parse is named."""
    try:
        return orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        pass
    for lineno, line in enumerate(lines, 1):
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TraceError(lineno, f"not JSON ({exc})", str(path)) from None
    raise TraceError(len(lines), "not JSON", str(path))


def read(path: str | Path) -> Iterator[dict]:
    """Yield the header, each operation, then the footer of a v2 file."""
    path = Path(path)
    data, broken_at = _data(path)
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()                         # the newline that ends the last line
    if broken_at is not None and lines:     # the lines before the damage, then the error;
        lines.pop()                         # the last one may be cut anywhere
    objs = _parse(path, lines)
    if broken_at is not None and not objs:
        raise _corrupt(path, lines, broken_at)
    seen_end = False
    for lineno, obj in enumerate(objs, 1):
        if seen_end:
            raise TraceError(lineno, "data after the end line", str(path))
        if not isinstance(obj, dict):
            raise TraceError(lineno, "a line must be a JSON object", str(path))
        if lineno == 1:
            if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                raise TraceError(lineno, "not an anonsim v2 trace (bad header)", str(path))
            yield obj
            continue
        op = obj.get("op")
        if op == "end":
            seen_end = True
            yield obj
            continue
        need = NEED.get(op)
        if need is None:
            raise TraceError(lineno, f"unknown op {op!r}", str(path))
        if not obj.keys() >= need:
            missing = [f for f in OPS[op] if f not in obj]
            raise TraceError(lineno, f"{op}: missing field(s) {', '.join(missing)}", str(path))
        if op == "fork" and obj["kind"] not in FORK_KINDS:
            raise TraceError(lineno, f"fork: kind must be one of {FORK_KINDS}", str(path))
        yield obj
    if broken_at is not None:
        raise _corrupt(path, lines, broken_at)
    if not objs:
        raise TraceError(0, "empty file", str(path))
    if not seen_end:
        raise TraceError(len(objs), "truncated: no end line (recording incomplete)", str(path))


def load(path: str | Path) -> tuple[dict, list[dict], dict]:
    """-> (header, operations, footer) of a whole v2 file."""
    ops = list(read(path))
    footer = ops.pop()
    return ops[0], ops[1:], footer
