"""`sweep report` section "what each policy does to real programs": the cells of
``workload=recording`` (recordings of real programs, conf/real.yaml), per program and
policy against eager on the same recording.

Every recorded process exits, so final counts are 0 under every policy: the figures are
at the peak (the most objects alive at once), in objects and KB (object sizes of the
cell's architecture profile, lazy's vm_area_struct with its ``lazy_vma_extra``)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import polars as pl

from simcore.slab import CACHES

SHORT = {"vm_area_struct": "VMA", "anon_vma": "AV", "anon_vma_chain": "AVC"}


def object_sizes(arch: str) -> dict[str, int]:
    """Object size per cache (and lazy's VMA extra) of an arch profile in conf/arch/."""
    from simcore.arch import ArchConf
    from .config import PROJECT_CONF, _load_yaml
    sizes = asdict(ArchConf())
    path = PROJECT_CONF / "arch" / f"{arch}.yaml"
    if path.is_file():
        sizes.update(_load_yaml(path) or {})
    return {k: int(sizes[k]) for k in (*CACHES, "lazy_vma_extra")}


def _peak_kb(row: dict, sizes: dict[str, int]) -> float:
    extra = sizes["lazy_vma_extra"] if row["policy"] == "lazy" else 0
    return sum(row[f"{c}_peak"] * (sizes[c] + (extra if c == "vm_area_struct" else 0))
               for c in CACHES) / 1024


def real_programs(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (program, arch, policy+variant): peaks and their change vs eager, KB
    saved at the peak, lazy's upgrade work and the rmap walks' cost."""
    if "workload.path" not in df.columns:
        return pl.DataFrame()
    rec = df.filter(pl.col("workload") == "recording")
    rows = []
    for (path, arch), part in rec.group_by(["workload.path", "arch"], maintain_order=True):
        eager = part.filter(pl.col("policy") == "eager")
        if not eager.height:
            continue
        base = eager.row(0, named=True)
        sizes = object_sizes(arch)
        for r in part.sort(["policy", "variant"]).iter_rows(named=True):
            out = {"program": Path(path).stem, "arch": arch,
                   "policy": r["policy"] + (f" {r['variant']}" if r["variant"] else "")}
            for c in CACHES:
                out[f"{SHORT[c]}_peak"] = r[f"{c}_peak"]
                out[f"{SHORT[c]}_delta"] = r[f"{c}_peak"] - base[f"{c}_peak"]
            out["objects_saved"] = -sum(out[f"{SHORT[c]}_delta"] for c in CACHES)
            out["kb_saved"] = _peak_kb(base, sizes) - _peak_kb(r, sizes)
            out["upgrades"] = r["lazy_upgrades"]
            out["upgrade_folios"] = r["lazy_upgrade_folios"]
            out["upgrade_ptes"] = r["lazy_upgrade_ptes"]
            out["rmap_walks"] = r["rmap_walks"]
            out["rmap_avcs"] = r["rmap_avcs_visited"]
            out["rmap_vmas"] = r["rmap_vmas_visited"]
            out["rmap_avcs_delta"] = r["rmap_avcs_visited"] - base["rmap_avcs_visited"]
            rows.append(out)
    return pl.DataFrame(rows).sort(["program", "arch"], maintain_order=True) if rows else \
        pl.DataFrame()


def real_programs_table(df: pl.DataFrame) -> str:
    """The section's Markdown table ("" without recording cells)."""
    t = real_programs(df)
    if not t.height:
        return ""
    head = ("| program | arch | policy | VMA peak (Δ) | AV peak (Δ) | AVC peak (Δ) | "
            "objects saved | KB saved | upgrades (folios, PTEs) | rmap walks | "
            "AVCs visited (Δ) | VMAs visited |")
    lines = [head, "|" + "---|" * 12]
    for r in t.iter_rows(named=True):
        peaks = " | ".join(f"{r[f'{s}_peak']} ({r[f'{s}_delta']:+d})" for s in SHORT.values())
        lines.append(f"| {r['program']} | {r['arch']} | {r['policy']} | {peaks} | "
                     f"{r['objects_saved']} | {r['kb_saved']:.1f} | {r['upgrades']} "
                     f"({r['upgrade_folios']}, {r['upgrade_ptes']}) | {r['rmap_walks']} | "
                     f"{r['rmap_avcs']} ({r['rmap_avcs_delta']:+d}) | {r['rmap_vmas']} |")
    return "\n".join(lines)
