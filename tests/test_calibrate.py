"""`sweep calibrate`: the bounded fit, the designed shapes' simulator features, the swap
device's teardown when interrupted, and a short real calibration of every model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ROOT
from sweep import calibrate as cal
from sweep.calibrate import swap
from sweep.calibrate.fit import FitError, fit
from sweep.calibrate.models import (FaultModel, FaultShape, ForkModel, ForkShape, WalkModel,
                                    WalkShape)
from sweep.cli import app


# ---------------------------------------------------------------------------- the fit
def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.integers(100, 9000, (30, 4))]).astype(float)
    truth = np.array([5000, 400, 150, 200, 70])
    assert np.allclose(fit(X, X @ truth), truth, rtol=1e-6)


def test_fit_keeps_each_coefficient_above_its_floor():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(20), rng.integers(100, 9000, (20, 2))]).astype(float)
    y = X @ np.array([5000.0, 400.0, 0.0]) * rng.uniform(0.97, 1.03, 20)  # 3rd term absent
    unbounded = fit(X, y)
    bounded = fit(X, y, lower=np.array([100.0, 10.0, 25.0]))
    assert unbounded[2] < 25 and bounded[2] == pytest.approx(25.0)
    assert (bounded >= [100, 10, 25]).all()


def test_fit_holds_fixed_coefficients_at_their_value():
    X = np.array([[10.0, 10.0], [20.0, 20.0], [40.0, 40.0]])     # collinear: walks = locks
    y = X @ np.array([300.0, 5.0])
    coef = fit(X, y, lower=np.array([1.0, 5.0]), free=np.array([True, False]))
    assert coef.tolist() == pytest.approx([300.0, 5.0])
    with pytest.raises(FitError):
        fit(X[:1], y[:1])


# ---------------------------------------------------------------------------- features
def test_fork_shapes_separate_anon_vmas_avcs_and_ptes():
    """Child of a chain 2 deep: 3 AVCs cloned + 1 new per VMA; with the ancestors exited,
    anon_vma_clone() reuses the middle one's anon_vma (no new anon_vma, no new AVC);
    emptied VMAs keep anon_vma and AVCs but copy no PTE."""
    assert ForkModel.features(ForkShape(10, 4, 1, 2)).tolist() == [1, 10, 40, 10, 40]
    assert ForkModel.features(ForkShape(10, 4, 1, 2, True)).tolist() == [1, 10, 30, 0, 40]
    assert ForkModel.features(ForkShape(10, 4, 2, 0)).tolist() == [1, 10, 20, 10, 0]
    assert ForkModel.features(ForkShape(10, 4, 0, 0)).tolist() == [1, 10, 0, 0, 0]


def test_fork_design_covers_the_predicted_forks_without_extrapolation():
    """The training shapes reach the largest predicted fork in every feature, and every
    held-out shape lies inside the training range (large ones included)."""
    train = np.array([ForkModel.features(s) for s in ForkModel.train])
    held = np.array([ForkModel.features(s) for s in ForkModel.held_out])
    assert (train.max(0)[1:] >= [ForkModel.MAX_VMAS, ForkModel.MAX_AVCS, ForkModel.MAX_VMAS,
                                 ForkModel.MAX_PTES]).all()
    assert (held <= train.max(0)).all() and (held >= train.min(0)).all()
    assert held[:, 1].max() >= ForkModel.MAX_VMAS        # a held-out shape as large as Android's


def test_fork_samples_drop_preempted_forks():
    """forkbench prints <ns>:<involuntary context switches> per fork; preempted ones go."""
    assert ForkModel.samples("1200:0 5000:1 1300:0 9000:3", ForkShape(10, 1, 1)) == [1200.0,
                                                                                     1300.0]


def test_fault_shapes_count_each_fault_kind():
    assert FaultModel.features(FaultShape("new", 3, 4)).tolist() == [12, 3, 0, 0]
    assert FaultModel.features(FaultShape("prepared", 3, 4)).tolist() == [9, 0, 0, 0]
    assert FaultModel.features(FaultShape("cow", 3, 4)).tolist() == [0, 0, 12, 0]
    assert FaultModel.features(FaultShape("reuse", 3, 4)).tolist() == [0, 0, 0, 12]


def test_walk_shapes_visit_every_descendant_before_the_root():
    """After the root's mremap its AVC is last in its anon_vma's tree: try_to_unmap() of each
    of its pages visits the width children and the depth chain first (they do not map it)."""
    assert WalkModel.features(WalkShape(0, 0, 8)).tolist() == [8, 8, 8, 8]
    assert WalkModel.features(WalkShape(3, 0, 8)).tolist() == [8, 32, 8, 8]
    assert WalkModel.features(WalkShape(2, 4, 8)).tolist() == [8, 56, 8, 8]


# ---------------------------------------------------------------------------- the swap device
class FakeZram(swap.Zram):
    """The kernel side in memory: zram devices and active swap areas."""

    def __init__(self) -> None:
        self.devices, self.swaps, self.log = {0}, set(), []

    def available(self):
        return None

    def hot_add(self):
        dev = max(self.devices) + 1
        self.devices.add(dev)
        return dev

    def set_disksize(self, dev, size):
        self.log.append(("disksize", dev, size))

    def mkswap(self, dev):
        self.log.append(("mkswap", dev))

    def swapon(self, dev):
        self.swaps.add(dev)

    def is_swap(self, dev):
        return dev in self.swaps

    def swapoff(self, dev):
        self.swaps.discard(dev)

    def exists(self, dev):
        return dev in self.devices

    def hot_remove(self, dev):
        self.devices.discard(dev)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("step", ["hot_add", "disksize", "mkswap", "swapon", "inside"])
def test_swap_device_is_removed_when_interrupted_at_any_step(step, tmp_path):
    kernel, state = FakeZram(), tmp_path / "state.json"

    def hook(at):
        if at == step:
            raise Interrupt(at)
    with pytest.raises(Interrupt):
        with swap.zram_swap(kernel=kernel, state=state, hook=hook) as dev:
            assert kernel.swaps == {dev} and kernel.devices == {0, dev}
            raise Interrupt("inside")
    assert kernel.devices == {0} and kernel.swaps == set() and not state.exists()


@pytest.mark.parametrize("sig, exc", [(signal.SIGTERM, SystemExit),
                                      (signal.SIGINT, KeyboardInterrupt)])
def test_swap_device_is_removed_on_sigterm_and_ctrl_c(sig, exc, tmp_path):
    kernel, state = FakeZram(), tmp_path / "state.json"
    before = signal.getsignal(signal.SIGTERM)

    def hook(at):
        if at == "mkswap":
            os.kill(os.getpid(), sig)         # handled at the next bytecode: inside the hook
    with pytest.raises(exc):
        with swap.zram_swap(kernel=kernel, state=state, hook=hook):
            pass
    assert kernel.devices == {0} and kernel.swaps == set() and not state.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_killed_calibration_is_undone_at_the_next_start(tmp_path):
    """A kill that skips `finally` (SIGKILL) leaves the state file: the next start undoes it."""
    kernel, state = FakeZram(), tmp_path / "state.json"
    killed = swap.zram_swap(kernel=kernel, state=state)
    dev = killed.__enter__()                     # never exited: as if killed here
    assert json.loads(state.read_text())["zram"] == dev and kernel.swaps == {dev}
    with swap.zram_swap(kernel=kernel, state=state) as again:
        assert kernel.devices == {0, again} and kernel.swaps == {again}   # old one removed
    assert kernel.devices == {0} and kernel.swaps == set() and not state.exists()
    killed.__exit__(None, None, None)            # its teardown finds nothing left to undo
    assert kernel.devices == {0}


def test_a_live_calibration_is_not_disturbed(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"pid": os.getppid(), "zram": 5, "step": "swapon"}))
    with pytest.raises(swap.SwapError, match="another calibration"):
        swap.recover(FakeZram(), state)


KILL_AT_SWAPON = """
import os, signal, sys
from pathlib import Path
from sweep.calibrate import swap
def hook(at):
    if at == "swapon":
        print(open('/proc/swaps').read(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
with swap.zram_swap(size="16M", state=Path(sys.argv[1]), hook=hook):
    pass
"""


def test_real_zram_device_killed_then_recovered(tmp_path):
    """On this kernel: a calibration killed (SIGKILL, no `finally`) right after swapon leaves
    a zram swap device and its state file; recover() removes both.  Without root or zram,
    zram_swap refuses with a one-line reason instead."""
    why = swap.Zram().available()
    if why:
        with pytest.raises(swap.SwapError, match="root|zram|command"):
            with swap.zram_swap(state=tmp_path / "state.json"):
                pass
        return
    state = tmp_path / "state.json"
    before = (Path("/proc/swaps").read_text(), sorted(os.listdir("/sys/block")))
    res = subprocess.run([sys.executable, "-c", KILL_AT_SWAPON, str(state)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == -signal.SIGKILL, res.stderr
    dev = json.loads(state.read_text())["zram"]
    assert f"/dev/zram{dev}" in res.stdout                      # it was swapping
    assert swap.recover(state=state)["zram"] == dev
    assert (Path("/proc/swaps").read_text(), sorted(os.listdir("/sys/block"))) == before
    assert not state.exists()


# ---------------------------------------------------------------------------- the command
class TinyFork(ForkModel):
    train = [ForkShape(*a) for a in ((20, 1, 0), (200, 1, 0), (20, 1, 1), (200, 2, 1, 1),
                                     (100, 2, 2), (100, 1, 1, 2, True), (200, 4, 1))]
    held_out = [ForkShape(100, 2, 1, 1)]
    per_run = 3


class TinyFault(FaultModel):
    train = [FaultShape(m, v, p) for m in ("new", "prepared", "cow", "reuse")
             for v, p in ((64, 2), (8, 17))]
    held_out = [FaultShape("new", 16, 8)]
    per_run = 3


class TinyWalk(WalkModel):
    train = [WalkShape(0, 0, 32), WalkShape(8, 0, 32), WalkShape(0, 8, 16)]
    held_out = [WalkShape(4, 0, 32)]


def test_short_calibration_of_every_model(tmp_path):
    """Real measurements, few and small: every coefficient comes out at or above its floor,
    every shape has a prediction; host.yaml and the raw record are written.  Without root
    or zram the walk model is left out (its refusal is tested above)."""
    models = [TinyFork, TinyFault] + ([TinyWalk] if swap.Zram().available() is None else [])
    result = cal.calibrate(models, rounds=1, scale=0.3)
    for name, f in result["models"].items():
        assert all(f["coefficients"][c] >= f["lower"][c] - 1e-9 for c in f["coefficients"])
        assert all(s["ns"] > 0 and s["predicted"] > 0 and s["samples"] for s in f["shapes"])
        assert any(s["held_out"] for s in f["shapes"])
    fork = result["models"]["fork"]
    assert all(s["dropped"] + len(s["samples"]) == 3 for s in fork["shapes"])   # 1 run x 3
    cal.write_host_yaml(tmp_path / "host.yaml", result)
    cal.write_raw(tmp_path / "raw.json", result)
    text = (tmp_path / "host.yaml").read_text()
    assert "fork_av_ns:" in text and "fault_cow_ns:" in text
    assert json.loads((tmp_path / "raw.json").read_text())["floors"]["syscall"] > 0


class AllPreempted(TinyFork):
    """Every fork reported preempted (as an unprivileged user under load)."""
    train = [ForkShape(20, 1, 0)]
    held_out: list = []

    @staticmethod
    def samples(out: str, s: ForkShape) -> list[float]:
        return ForkModel.samples(" ".join(f"{v.split(':')[0]}:1" for v in out.split()), s)


def test_a_shape_whose_forks_were_all_preempted_stops_the_calibration():
    with pytest.raises(cal.CalibrateError, match="20 VMAs.*every one preempted"):
        cal.calibrate([AllPreempted], rounds=1, scale=0.3)


def test_cli_errors_are_one_line(monkeypatch):
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", "--models", "fork,nope"])
    assert res.exit_code == 2 and "unknown model(s) nope" in res.output
    monkeypatch.setattr(swap.Zram, "available", lambda self: "not root (creating a zram "
                        "swap device needs root)")
    res = runner.invoke(app, ["calibrate"])                    # refused before measuring
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        "error: calibrate: not root (creating a zram swap device needs root); "
        "`--models fork,fault` needs no swap device"]
    monkeypatch.setattr(cal.shutil, "which", lambda name: None)
    res = runner.invoke(app, ["calibrate", "--models", "fault"])
    assert res.exit_code == 1 and res.output.strip().endswith(
        "calibrate: no C compiler (cc/gcc) to build the benchmarks")


def test_committed_raw_record_has_every_model_and_matches_host_yaml():
    """conf/arch/host-calibration.json (the last full run, read by the notebook): every
    model, its shapes' predictions recomputed from features and coefficients."""
    raw = json.loads((ROOT / "conf/arch/host-calibration.json").read_text())
    assert set(raw["models"]) == {"fork", "fault", "walk"}
    for name, f in raw["models"].items():
        coef = np.array(list(f["coefficients"].values()))
        for s in f["shapes"]:
            assert s["predicted"] == pytest.approx(float(np.dot(s["features"], coef)))
            assert s["ns"] == pytest.approx(float(np.percentile(s["samples"], 10)))
