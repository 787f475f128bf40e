"""sweep/report_android.py: the Android activity section keeps every (workload, arch, policy,
variant) apart, with its own eager baseline."""
import polars as pl

from sweep.report_android import android_section, vma_change_table


def _rows() -> pl.DataFrame:
    base = {"workload": "android_apps", "variant": None, "status": "ok", "anon_vma": 1,
            "anon_vma_chain": 1, "lazy_pinned_vmas": 0, "vma_merges": 10, "ops_munmap": 4,
            "ops_munmap_partial": 1, "ops_exit": 2, "pageout_walks": 0,
            "pageout_vmas_visited": 0, "pageout_root_lock_read": 0, "pageout_lockless_walks": 0}
    rows = []
    # arm64_android compacts (swap), x86_64 does not; lazy has 1 % more VMAs on arm64, 2 % on x86
    for arch, compactions, lazy_vmas in (("arm64_android", 5, 1010), ("x86_64", 0, 1020)):
        for policy, vmas in (("eager", 1000), ("lazy", lazy_vmas)):
            rows.append({**base, "arch": arch, "policy": policy, "vm_area_struct": vmas,
                         "vm_area_struct_kb": vmas * 0.25, "compactions": compactions,
                         "pageout_pages": 7 * compactions, "swapin_pages": compactions,
                         "pageout_vmas_visited": 30 * compactions,
                         "pageout_root_lock_read": 2 * compactions})
    return pl.DataFrame(rows)


def test_each_arch_is_its_own_row_with_its_own_eager_baseline():
    t = vma_change_table(_rows())
    assert t.height == 4
    got = {(r["arch"], r["policy"]): round(r["vma_change_pct"], 6) for r in t.iter_rows(named=True)}
    assert got == {("arm64_android", "eager"): 0.0, ("arm64_android", "lazy"): 1.0,
                   ("x86_64", "eager"): 0.0, ("x86_64", "lazy"): 2.0}


def test_section_names_the_arch_of_every_row():
    lines = [ln for ln in android_section(_rows()) if ln.startswith("| android_apps")]
    assert [ln.split(" | ")[1:3] for ln in lines] == [
        ["arm64_android", "eager"], ["arm64_android", "lazy"], ["x86_64", "eager"], ["x86_64", "lazy"]]
    arm_lazy = lines[1].split(" | ")
    assert arm_lazy[-2:] == ["30.0", "2.0 |"]          # walk VMAs and root locks per compaction
    assert lines[3].split(" | ")[-2:] == ["-", "- |"]  # x86_64: no compaction
