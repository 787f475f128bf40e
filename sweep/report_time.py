"""`sweep report`'s time section: predicted time per operation kind and policy (the time
columns of simcore/timemodel.py), rmap-walk time per walk kind and per compaction, and the
cover letter's fork claim (eager vs lazy per fork, and a fork microbenchmark)."""
from __future__ import annotations

import polars as pl

from simcore.timemodel import FAULT_KINDS, WALK_KINDS, fork_cost, fork_parts

KEYS = ["workload", "arch", "policy"]


def _mean(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    have = [c for c in cols if c in df.columns]
    return (df.group_by(KEYS, maintain_order=True).agg(*(pl.col(c).mean() for c in have),
                                                       pl.len().alias("cells")).sort(KEYS))


def _ms(ns: float | None) -> str:
    return f"{(ns or 0) / 1e6:,.3f}"


def _per(total: float | None, n: float | None) -> str:
    return "-" if not n or total is None else f"{total / n:,.0f}"


def time_table(df: pl.DataFrame) -> str:
    """Per workload x arch x policy (means over seeds): predicted ms per cell for each
    operation kind, and ns per operation in brackets."""
    if "time_fault_ns" not in df.columns or not df.height:
        return ""
    cols = [f"time_fault_{k}_ns" for k in FAULT_KINDS] + [f"faults_{k}" for k in FAULT_KINDS]
    cols += ["fork_ns_predicted", "forks", "time_fork_upgrade_ns", "time_upgrade_ns",
             "time_rmap_ns", "rmap_walks", "time_lock_write_hold_ns",
             "time_lock_write_hold_max_ns", "time_lock_read_hold_ns",
             "time_lock_read_hold_max_ns", "time_lock_other_ns", "anon_vma_root_lock_write",
             "rmap_root_lock_read"]
    g = _mean(df, cols)
    head = ("| workload | arch | policy | " + " | ".join(f"fault {k}" for k in FAULT_KINDS)
            + " | fork | of which upgrade | other upgrades | rmap walks | root write hold "
              "(max root) | root read hold (max root) | other locks |")
    lines = [head, "|" + "---|" * (3 + len(FAULT_KINDS) + 7)]
    for r in g.iter_rows(named=True):
        faults = " | ".join(f"{_ms(r[f'time_fault_{k}_ns'])} ({_per(r[f'time_fault_{k}_ns'], r[f'faults_{k}'])})"
                            for k in FAULT_KINDS)
        lines.append(
            f"| {r['workload']} | {r['arch']} | {r['policy']} | {faults} | "
            f"{_ms(r['fork_ns_predicted'])} ({_per(r['fork_ns_predicted'], r['forks'])}) | "
            f"{_ms(r['time_fork_upgrade_ns'])} | {_ms(r['time_upgrade_ns'])} | "
            f"{_ms(r['time_rmap_ns'])} ({_per(r['time_rmap_ns'], r['rmap_walks'])}) | "
            f"{_ms(r['time_lock_write_hold_ns'])} ({_ms(r['time_lock_write_hold_max_ns'])}) | "
            f"{_ms(r['time_lock_read_hold_ns'])} ({_ms(r['time_lock_read_hold_max_ns'])}) | "
            f"{_ms(r['time_lock_other_ns'])} |")
    return "\n".join(lines)


def compaction_columns(df: pl.DataFrame) -> list[str]:
    """Integer columns that count compactions (a cached-app compaction, e.g. the Android
    generator's process_madvise(MADV_PAGEOUT) rounds), if rows carry any."""
    return [c for c in df.columns if "compaction" in c and df.schema[c].is_integer()]


def walk_table(df: pl.DataFrame) -> str:
    """rmap-walk time per walk kind: ns per walk, ms per cell, and per compaction or page
    paged out when the rows count those (pageout_pages, *compaction* columns)."""
    if "time_rmap_ns" not in df.columns or not df.height:
        return ""
    per_op = compaction_columns(df) + [c for c in ("pageout_pages",) if c in df.columns]
    cols = [f"time_rmap_{k}_ns" for k in WALK_KINDS] + [f"rmap_{k}_walks" for k in WALK_KINDS]
    g = _mean(df, cols + per_op)
    kinds = [k for k in WALK_KINDS if f"rmap_{k}_walks" in g.columns
             and (g[f"rmap_{k}_walks"].fill_null(0) > 0).any()]
    if not kinds:
        return ""
    head = "| workload | arch | policy | walk kind | walks | ms | ns per walk |"
    head += "".join(f" ns per {c} |" for c in per_op)
    lines = [head, "|" + "---|" * (7 + len(per_op))]
    for r in g.iter_rows(named=True):
        for k in kinds:
            walks, ns = r[f"rmap_{k}_walks"], r[f"time_rmap_{k}_ns"]
            if not walks:
                continue
            extra = "".join(f" {_per(ns, r[c])} |" for c in per_op)
            lines.append(f"| {r['workload']} | {r['arch']} | {r['policy']} | {k} | {walks:,.0f} | "
                         f"{ns / 1e6:,.3f} | {ns / walks:,.0f} |{extra}")
    return "\n".join(lines)


# ---- the fork claim ----------------------------------------------------------------
def _fork_pairs(part: pl.DataFrame, policy: str) -> tuple[list[tuple[float, float]], float]:
    """Per-fork (eager ns, policy ns) pairs of one workload x arch: the same trace forks in
    the same order under both policies (seeds matched, equal fork counts); and the paired
    policy rows' time_fork_upgrade_ns total (0 where the rows lack it)."""
    by = {p: part.filter(pl.col("policy") == p).sort("seed") for p in ("eager", policy)}
    pairs: list[tuple[float, float]] = []
    upgrade = 0.0
    for e, z in zip(by["eager"].iter_rows(named=True), by[policy].iter_rows(named=True)):
        if e["seed"] == z["seed"] and len(e["fork_ns"] or []) == len(z["fork_ns"] or []):
            pairs += list(zip(e["fork_ns"], z["fork_ns"]))
            upgrade += float(z.get("time_fork_upgrade_ns") or 0.0)
    return pairs, upgrade


def fork_claim(df: pl.DataFrame) -> pl.DataFrame:
    """Per workload x arch: mean predicted fork latency under eager and lazy (over every fork
    of every seed), the change, lazy's upgrade share, and per-fork pairs (the same trace
    forks in the same order under both policies): how many lazy forks are slower and the
    largest slowdown; and, when the rows have it, the COW-context design's mean and change
    over its own pairs with eager (`cow_context_us`, `cow_context_change_pct`)."""
    rows = []
    if "fork_ns" not in df.columns:
        return pl.DataFrame()
    for (workload, arch), part in df.group_by(["workload", "arch"], maintain_order=True):
        pairs, upgrade = _fork_pairs(part, "lazy")
        if not pairs:
            continue
        eager = sum(e for e, _ in pairs) / len(pairs)
        lazy = sum(z for _, z in pairs) / len(pairs)
        slower = [(z - e, e) for e, z in pairs if z > e]
        worst = max(slower, default=(0.0, 1.0))
        upgrade /= len(pairs)          # the paired lazy rows' upgrade scans, per fork
        row = {"workload": workload, "arch": arch, "forks": len(pairs),
               "eager_us": eager / 1e3, "lazy_us": lazy / 1e3,
               "change_pct": 100 * (lazy - eager) / eager,
               "lazy_upgrade_us": upgrade / 1e3, "lazy_slower": len(slower),
               "worst_slowdown_us": worst[0] / 1e3,
               "worst_slowdown_pct": 100 * worst[0] / worst[1]}
        ctx, _ = _fork_pairs(part, "cow_context")
        if ctx:
            e_ns = sum(e for e, _ in ctx) / len(ctx)
            c_ns = sum(c for _, c in ctx) / len(ctx)
            row.update(cow_context_us=c_ns / 1e3, cow_context_change_pct=100 * (c_ns - e_ns) / e_ns)
        rows.append(row)
    return pl.DataFrame(rows)


MICRO_SHAPES = ((10, 1, 1), (10, 16, 16), (100, 1, 1), (100, 16, 16), (1000, 1, 1),
                (1000, 16, 16), (100, 256, 16), (100, 512, 1))


def fork_microbench(arch: dict, shapes: tuple[tuple[int, int, int], ...] = MICRO_SHAPES
                    ) -> pl.DataFrame:
    """A parent with N anon VMAs of P pages, the first T pages of each written, forks, the
    child exits, it forks again: predicted ns of each fork under eager and lazy, and lazy's
    upgrade work (its first fork's anon_vma + AVC per VMA and the PTE scan re-pointing its
    folios, over every page of the VMA as simcore's lazy model counts it; and, as a lower
    bound, over the present PTEs only)."""
    from simcore import trace as T
    from simcore.machine import Machine
    rows = []
    for n, p, touched in shapes:
        ops: list = []
        for i in range(n):
            ops += [T.Mmap(0, f"r{i}", p), T.Touch(0, f"r{i}", 0, touched)]
        ops += [T.Fork(0, 1), T.Exit(1), T.Fork(0, 2)]
        forks = {pol: Machine(pol).run(ops).forks for pol in ("eager", "lazy")}
        ns = {pol: fork_cost(f, arch) for pol, f in forks.items()}
        extra, saved = ns["lazy"][0] - ns["eager"][0], ns["eager"][1] - ns["lazy"][1]
        # later forks of the parent until lazy's total is back at eager's
        even = max(0.0, extra) / saved if saved > 0 else float("inf")
        for which in (0, 1):
            e = fork_parts(forks["eager"][which], arch)
            z = fork_parts(forks["lazy"][which], arch)
            eager, lazy = sum(e.values()), sum(z.values())
            # lazy's children get no anon_vma: every anon_vma lazy allocates at fork is an
            # upgrade of a parent VMA (+1 anon_vma, +1 AVC), then the PTE scan
            upgrade = (z["upgrade_ptes"] + z["anon_vmas"]
                       + float(arch["fork_avc_ns"]) * forks["lazy"][which].anon_vmas)
            rows.append({"vmas": n, "pages": p, "written": touched,
                         "fork": "first" if which == 0 else "second",
                         "eager_us": eager / 1e3, "lazy_us": lazy / 1e3,
                         "change_pct": 100 * (lazy - eager) / eager,
                         "lazy_upgrade_us": upgrade / 1e3, "later_forks_to_even": even,
                         # the scan charged for present PTEs only (a page-table walk that
                         # skips none entries for free): the lower bound of the upgrade
                         "lazy_us_present_only": (lazy - z["upgrade_ptes"] + (which == 0)
                                                  * e["ptes"]) / 1e3})
    return pl.DataFrame(rows)


def _fmt(df: pl.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    lines = [head, "|" + "---|" * len(df.columns)]
    for r in df.iter_rows():
        lines.append("| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else str(v)
                                       for v in r) + " |")
    return "\n".join(lines)


def time_section(df: pl.DataFrame) -> list[str]:
    """The report's time section (Markdown lines); [] when the rows carry no time columns."""
    table = time_table(df)
    if not table:
        return []
    text = ["## Predicted time per operation kind (simcore/timemodel.py)", "",
            "Means over seeds, ms per cell (ns per operation in brackets); coefficients from "
            "each arch profile (docs/time-model.md: which are fitted and which assumed). Lock "
            "holds are estimates of the time each anon_vma root rwsem is held (all roots, and "
            "the most-held root); 'other locks' are a design's own locks (cow_context).", "",
            table, ""]
    walks = walk_table(df)
    if walks:
        text += ["### rmap-walk time per walk kind (compaction: pageout walks)", "", walks, ""]
    claim = fork_claim(df)
    if claim.height:
        text += ["### The fork claim: predicted latency per fork, eager vs lazy", "",
                 "Per-fork pairs: the same trace forks in the same order under both policies; "
                 "`lazy_upgrade_us` is lazy's PTE scan re-pointing folios at the parent's "
                 "first fork, per fork on average.", "", _fmt(claim), ""]
    return text
