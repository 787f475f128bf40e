"""Every registered workload schema and the arch schema say where each field comes from
(simcore.provenance), the checker refuses what is missing or invalid, and the README's
provenance table is the one `sweep provenance --readme` prints."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

import simcore.arch  # noqa: F401
import simcore.workloads  # noqa: F401
from conftest import ROOT
from simcore import provenance, registry
from sweep import report_provenance as rp
from sweep.cli import app


def test_every_registered_schema_field_has_valid_provenance():
    schemas = [registry.schema("workload", n) for n in registry.names("workload")
               if registry.lookup("workload", n).module.startswith("simcore.")]   # not plugins
    assert len(schemas) >= 14 and "arm64_android" in rp.arch_profiles()
    found = [p for s in [*schemas, registry.schema("arch", "x86_64")]
             for p in provenance.problems(s, rp.arch_profiles())]
    assert found == []
    rp.check_builtin()


def test_sweep_provenance_prints_any_workload_and_profile():
    res = CliRunner().invoke(app, ["provenance", "--workload", "server_boot", "--arch", "x86_64"])
    assert res.exit_code == 0, res.output
    assert "| workload.server_boot.anon_share | 0.44 | 0.3..0.5 | measured |" in res.output
    assert "| arch.x86_64.anon_vma | 104 | 96..128 | measured |" in res.output


@dataclass
class _Bad:
    name: str = field(default="bad", metadata={"source": "n/a", "range": None, "ref": "x"})
    bare: int = 3
    wrong: float = field(default=0.5, metadata={"source": "guessed", "range": (0, 1), "ref": "x"})
    outside: int = field(default=9, metadata={"source": "assumed", "range": (1, 5), "ref": "x"})
    upside: int = field(default=2, metadata={"source": "cited", "range": (5, 1), "ref": "x"})
    noref: int = field(default=2, metadata={"source": "cited", "range": (1, 5), "ref": ""})
    na_number: int = field(default=2, metadata={"source": "n/a", "range": (1, 5), "ref": "x"})
    norange: int = field(default=2, metadata={"source": "cited", "ref": "x"})


def test_checker_names_each_missing_or_invalid_entry():
    found = provenance.problems(_Bad)
    for name in ("bare", "wrong", "outside", "upside", "noref", "na_number", "norange"):
        assert sum(f"_Bad.{name}:" in p for p in found) == 1, (name, found)
    assert not any("_Bad.name" in p for p in found)
    with pytest.raises(provenance.ProvenanceError, match="_Bad.bare: no provenance"):
        provenance.check([_Bad])


def test_profile_entries_are_checked_against_the_profile_values():
    meta = simcore.arch.ArchConf.__dataclass_fields__["anon_vma"].metadata
    assert meta["profiles"]["arm64_android"]["source"] == "cited"
    found = provenance.problems(simcore.arch.ArchConf, {"arm64_android": {"vm_area_struct": 232, "anon_vma": 104}})
    assert found == ["ArchConf.anon_vma (profile arm64_android): value 104 is outside its "
                     "range (128, 128)"]


def test_knobs_are_the_fitted_and_assumed_numbers_with_a_range():
    boot = {k.name: k for k in provenance.knobs(registry.schema("workload", "android_boot"))}
    apps = {k.name for k in provenance.knobs(registry.schema("workload", "android_apps"))}
    assert boot["boot_apps"].source == "fitted_lazy" and (boot["boot_apps"].low, boot["boot_apps"].high) == (90, 160)
    assert boot["boot_apps"].integer and not boot["app_cow"].integer
    assert "app_libs" not in boot and "name" not in boot            # cited; not a number
    assert apps - set(boot) == {"procs_min", "procs_max", "app_forks",   # n_apps: cited
                                "lmkd_kills", "app_restarts", "compact_returns"}  # compactions: cited
    costs = {f for f in simcore.arch.ArchConf.__dataclass_fields__ if f.endswith("_ns")}
    arch = {k.name for k in provenance.knobs(simcore.arch.ArchConf, "arm64_android")} - costs
    assert arch == {"vm_area_struct", "lazy_vma_extra"}               # the profile's own entry
    assert "vm_area_struct" not in {k.name for k in provenance.knobs(simcore.arch.ArchConf)}


def test_the_table_lists_an_inherited_field_once_and_the_profile_values():
    rows = rp.rows(["android_boot", "android_apps"], ["arm64_android"])
    names = [(r.group, r.name) for r in rows]
    assert names.count(("workload", "boot_apps")) == 1
    assert ("workload", "app_forks") in names
    av = next(r for r in rows if r.group == "arch" and r.name == "anon_vma")
    assert (av.value, av.source) == (128, "cited")


def test_readme_copy_matches_the_command():
    res = CliRunner().invoke(app, ["provenance", "--readme"])
    assert res.exit_code == 0, res.output
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(rp.README_BEGIN), readme.index(rp.README_END) + len(rp.README_END)
    assert readme[start:end] == res.output.rstrip("\n"), "run `sweep provenance --readme` and paste"
