"""Hypothesis: random valid traces keep invariants I1-I6 after every op and leak nothing."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from simcore.check import check_no_leaks
from simcore.machine import Machine
from simcore.workloads import random_trace


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_ops=st.integers(1, 60))
def test_random_traces_keep_invariants_and_leak_nothing(seed, n_ops):
    ops = random_trace(seed, n_ops, exit_all=True)
    m = Machine("eager", check=True).run(ops)
    check_no_leaks(m)
