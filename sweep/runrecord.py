"""A record of each launch next to its results, like Hydra's ``.hydra/``.

``<out>/_runs/<UTC time>-<pid>/`` holds ``config.yaml`` (the composed base config, each
group option used, the axes, zip and exclude: everything the cells were made from),
``overrides.yaml`` (the command-line overrides as given), ``command.txt`` (the equivalent
`sweep launch` command, the process's argv, working directory, host, pid and user) and ``launch.log`` (what the launch did and
said).  Written through pyarrow.fs, so s3:// outputs get one too.
"""
from __future__ import annotations

import os
import shlex
import socket
import sys
import time

import yaml

from .store import Store

RUNS = "_runs"
REMOTE_FLUSH_S = 5.0            # an object store gets the whole log rewritten at most this often


class RunRecord:
    def __init__(self, store: Store, grid, overrides: list[str], command: list[str]):
        self.store = store
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.dir = f"{store.root}/{RUNS}/{stamp}-{os.getpid()}"
        self.lines: list[str] = []
        self._flushed = 0.0
        store.fs.create_dir(self.dir, recursive=True)
        config = {"source": grid.source, "name": grid.name, "base": grid.base,
                  "axes": grid.axes, "zip": grid.zips, "exclude": grid.exclude,
                  "options": grid.options}
        self._write("config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))
        self._write("overrides.yaml", yaml.safe_dump(list(overrides), default_flow_style=False))
        lines = [" ".join(shlex.quote(a) for a in command),
                   f"argv: {' '.join(shlex.quote(a) for a in sys.argv)}",
                   f"cwd: {os.getcwd()}", f"host: {socket.gethostname()}",
                   f"pid: {os.getpid()}", f"python: {sys.executable}",
                   f"user: {os.environ.get('USER', '')}",
                   f"started: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]
        self._write("command.txt", "\n".join(lines) + "\n")
        self.log(f"launch {grid.name}: {len(grid.cells)} cells -> {store.uri}")

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}"
        if self.store.is_local:
            with open(f"{self.dir}/launch.log", "a") as fh:
                fh.write(line + "\n")
            return
        self.lines.append(line)             # an object store: the whole log is rewritten
        if time.monotonic() - self._flushed >= REMOTE_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if not self.store.is_local:
            self._write("launch.log", "\n".join(self.lines) + "\n")
            self._flushed = time.monotonic()

    def _write(self, name: str, text: str) -> None:
        with self.store.fs.open_output_stream(f"{self.dir}/{name}") as fh:
            fh.write(text.encode())


def _plain(node):
    """Config values as YAML-safe builtins (tuples -> lists, other objects -> str)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    return str(node)
