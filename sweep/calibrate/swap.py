"""A swap device the calibration creates for reclaim (MADV_PAGEOUT) and removes again.

zram (drivers/block/zram): ``/sys/class/zram-control/hot_add`` creates a device and returns
its number, ``disksize`` sizes it, ``mkswap`` + ``swapon -p`` make it the first swap device;
teardown is ``swapoff``, ``reset``, ``hot_remove``.  Other zram devices and swap areas of
the machine are never touched.

The machine is left as found even when the calibration is interrupted:
- every step that changes the machine is first written to a state file (an intent log), with
  SIGINT/SIGTERM blocked while the step and its record are made;
- teardown runs in ``finally`` (Ctrl-C raises KeyboardInterrupt; SIGTERM is turned into
  SystemExit while the device exists);
- a calibration killed outright (SIGKILL, power loss) leaves the state file: the next
  calibration undoes what it records before it starts (``recover``).
``hook(step)`` is called after each step: tests inject an interruption there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

STATE = Path(os.environ.get("ANONSIM_CALIBRATE_STATE", "/var/tmp/anonsim-calibrate-swap.json"))
PRIORITY = 32767                       # swapon -p: used before any swap area already there
SIGNALS = {signal.SIGINT, signal.SIGTERM}


class SwapError(RuntimeError):
    """The swap device cannot be made (not root, no zram, a command failed)."""


class Zram:
    """The kernel side: zram sysfs and the swap commands (``root``: where sysfs is)."""

    def __init__(self, root: Path = Path("/sys")) -> None:
        self.root = root

    def available(self) -> str | None:
        """None if a device can be made here, else why not (one line)."""
        if os.geteuid() != 0:
            return "not root (creating a zram swap device needs root)"
        if not (self.root / "class/zram-control/hot_add").exists():
            return "no zram in this kernel (/sys/class/zram-control missing)"
        missing = [c for c in ("mkswap", "swapon", "swapoff") if shutil.which(c) is None]
        if missing:
            return f"missing command(s): {', '.join(missing)}"
        return None

    def hot_add(self) -> int:
        return int((self.root / "class/zram-control/hot_add").read_text())

    def set_disksize(self, dev: int, size: str) -> None:
        (self.root / f"block/zram{dev}/disksize").write_text(size)

    def mkswap(self, dev: int) -> None:
        _run(["mkswap", f"/dev/zram{dev}"])

    def swapon(self, dev: int) -> None:
        _run(["swapon", "-p", str(PRIORITY), f"/dev/zram{dev}"])

    def swapoff(self, dev: int) -> None:
        if self.is_swap(dev):
            _run(["swapoff", f"/dev/zram{dev}"])

    def is_swap(self, dev: int) -> bool:
        return any(line.split()[0] == f"/dev/zram{dev}"
                   for line in Path("/proc/swaps").read_text().splitlines()[1:] if line.strip())

    def exists(self, dev: int) -> bool:
        return (self.root / f"block/zram{dev}").exists()

    def hot_remove(self, dev: int) -> None:
        if self.exists(dev):
            (self.root / f"block/zram{dev}/reset").write_text("1")
            (self.root / "class/zram-control/hot_remove").write_text(str(dev))


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise SwapError(f"{' '.join(cmd)}: {msg[-1] if msg else f'exit {res.returncode}'}")


def _record(state: Path, entry: dict | None) -> None:
    if entry is None:
        state.unlink(missing_ok=True)
        return
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, state)


def teardown(kernel: Zram, entry: dict) -> None:
    """Undo what the state entry records: swapoff, then remove the zram device."""
    dev = entry.get("zram")
    if dev is None:
        return
    if entry.get("swapon") or entry.get("step") in ("mkswap", "swapon"):
        kernel.swapoff(dev)
    kernel.hot_remove(dev)


def recover(kernel: Zram | None = None, state: Path | None = None) -> dict | None:
    """Undo what an earlier calibration left behind (its state file); returns that entry."""
    kernel, state = kernel or Zram(), state or STATE
    try:
        entry = json.loads(state.read_text())
    except FileNotFoundError:
        return None
    except ValueError:                          # unreadable: nothing to undo safely
        entry = {}
    pid = entry.get("pid")
    if pid not in (None, os.getpid()) and _alive(pid):
        raise SwapError(f"another calibration (pid {pid}) holds {state}; wait for it to end")
    teardown(kernel, entry)
    _record(state, None)
    return entry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _signals_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def zram_swap(size: str = "64M", kernel: Zram | None = None, state: Path | None = None,
              hook: Callable[[str], None] | None = None) -> Iterator[int]:
    """A zram swap device, first in priority, for the duration of the block: yields its
    number.  Undone on exit, Ctrl-C or SIGTERM; recovered at the next start after a kill."""
    kernel, state = kernel or Zram(), state or STATE
    why = kernel.available()
    if why:
        raise SwapError(why)
    recover(kernel, state)
    hook = hook or (lambda step: None)
    entry: dict = {"pid": os.getpid()}
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _sigterm) if main_thread else None
    try:
        with _signals_blocked():
            entry.update(step="hot_add", zram=kernel.hot_add())
            _record(state, entry)
        hook("hot_add")
        kernel.set_disksize(entry["zram"], size)
        hook("disksize")
        with _signals_blocked():
            entry["step"] = "mkswap"
            _record(state, entry)
            kernel.mkswap(entry["zram"])
        hook("mkswap")
        with _signals_blocked():
            entry.update(step="swapon", swapon=True)
            _record(state, entry)
            kernel.swapon(entry["zram"])
        hook("swapon")
        yield entry["zram"]
    finally:
        with _signals_blocked():
            if "zram" in entry:
                teardown(kernel, entry)
            _record(state, None)
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)
