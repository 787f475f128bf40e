"""Checks a launch makes before Ray starts: the output location and the cluster address.

Every problem is a `LaunchError`, one line for the user (the CLI prints it and exits 2).
Network probes are bounded by a short timeout, so a typo fails in seconds, not minutes.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
import uuid
from typing import Any, Callable

PROBE_TIMEOUT_S = 10.0          # an S3/remote filesystem that does not answer in time is unreachable
CONNECT_TIMEOUT_S = 3.0         # TCP connect to a Ray GCS
RAY_DEFAULT_PORT = 6379


class LaunchError(RuntimeError):
    """A user mistake found before anything runs (one line)."""


def _bounded(what: str, fn: Callable[[], Any], timeout: float) -> Any:
    """Run fn in a daemon thread; its exception, or LaunchError if it takes longer than timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="preflight-probe")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise LaunchError(f"{what}: no answer within {timeout:.0f} s (unreachable?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ---- the output location ------------------------------------------------------------
def check_output(out: str, timeout: float = PROBE_TIMEOUT_S, what: str = "--out") -> None:
    """The output exists or can be created, is a directory, and takes a file."""
    if "://" in out:
        _check_remote(out, timeout)
    else:
        _check_local(out, what)


def _check_local(out: str, what: str = "--out") -> None:
    path = os.path.abspath(out)
    if len(out) > 80:
        out = out[:60] + "..." + out[-17:]         # the message stays one readable line
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == path else f" ({existing} is a file)"
        raise LaunchError(f"{what} {out}: not a directory{where}")
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    for part in path.split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise LaunchError(f"{what} {out}: the name {part[:40]}... is longer than this "
                              f"filesystem allows ({len(os.fsencode(part))} > {name_max} bytes)")
    if len(os.fsencode(path)) >= path_max:
        raise LaunchError(f"{what} {out}: the path is longer than this system allows "
                          f"({len(os.fsencode(path))} >= {path_max} bytes)")
    created = []
    try:
        probe_dir = path
        missing = []
        while not os.path.exists(probe_dir):
            missing.append(probe_dir)
            probe_dir = os.path.dirname(probe_dir)
        for d in reversed(missing):
            os.mkdir(d)
            created.append(d)
        probe = os.path.join(path, f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with open(probe, "w") as fh:
            fh.write("probe\n")
        os.unlink(probe)
    except OSError as exc:
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                pass
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EROFS:
            reason = "read-only filesystem"
        raise LaunchError(f"{what} {out}: cannot write there: {reason}") from None


def _check_remote(out: str, timeout: float) -> None:
    import pyarrow as pa
    import pyarrow.fs as pafs

    def probe() -> None:
        fs, root = pafs.FileSystem.from_uri(out)
        root = root.rstrip("/")
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            raise LaunchError(f"--out {_redact(out)}: not a directory")
        fs.create_dir(root, recursive=True)
        name = f"{root}/.probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with fs.open_output_stream(name) as fh:
            fh.write(b"probe\n")
        fs.delete_file(name)

    try:
        _bounded(f"--out {_redact(out)}", probe, timeout)
    except (OSError, pa.ArrowException, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise LaunchError(f"--out {_redact(out)}: cannot reach or write: {detail}") from None


def check_readable(out: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A sweep's location can be listed (a remote one answers within timeout)."""
    import pyarrow as pa
    from .store import Store

    def probe() -> None:
        store = Store(out)
        store.fs.get_file_info(store.root)

    try:
        _bounded(f"{_redact(out)}", probe, timeout)
    except (OSError, pa.ArrowException, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise LaunchError(f"cannot read {_redact(out)}: {detail}") from None


def _redact(uri: str) -> str:
    """A URI without its user:secret@ part, for messages."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


# ---- the cluster address --------------------------------------------------------------
def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """The Ray GCS at address accepts a TCP connection (ray.init would retry for minutes)."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[1] if "://" in address else address
    target = target.split("/", 1)[0]
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, str(RAY_DEFAULT_PORT)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise LaunchError(f"--address {address}: the port {port_text!r} is not a number") from None
    if not host or not 0 < port < 65536:
        raise LaunchError(f"--address {address}: expected host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.timeout:
        raise LaunchError(f"cannot reach the Ray cluster at {address}: no answer within "
                          f"{timeout:.0f} s") from None
    except OSError as exc:
        raise LaunchError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None
    if "://" not in address:
        _check_gcs(address, f"{host}:{port}", timeout)


def _check_gcs(address: str, target: str, timeout: float) -> None:
    """Something answers at target: is it a Ray GCS?  (A proxy or another service would
    make ray.init retry for half a minute.)"""
    try:
        from ray._raylet import GcsClient
    except ImportError:                 # a Ray without this class: ray.init will tell
        return
    what = f"cannot reach the Ray cluster at {address}"
    saved = os.dup(2)                   # Ray's C++ client logs its retries to fd 2
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        _bounded(what, lambda: GcsClient(address=target).cluster_id, timeout)
    except LaunchError:
        raise
    except Exception as exc:  # noqa: BLE001 - GcsClient raises RpcError and others
        detail = " ".join(str(exc).split())[:160]
        raise LaunchError(f"{what}: not a Ray GCS ({detail})") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
