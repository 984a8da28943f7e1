"""constraints.txt pins what translearn[dev,sweep,text,image] needs at the versions of this environment, never torch."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("constraints_tool", ROOT / "tools" / "constraints.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def _dist(folder: Path, name: str, version: str, *requires: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_the_closure_follows_extras_and_markers_and_leaves_torch_free(tmp_path):
    _dist(tmp_path, "app", "0.1", "Lib_B>=1", "torch>=2", "dev-tool; extra == 'dev'", "old; python_version < '3'",
          "other-extra; extra == 'docs'")
    _dist(tmp_path, "lib-b", "1.4", "engine[fast]>=2", "torch")
    _dist(tmp_path, "engine", "2.0", "speedup; extra == 'fast'", "unused; extra == 'slow'")
    _dist(tmp_path, "speedup", "0.9")
    _dist(tmp_path, "dev-tool", "3.3", "lib-b")
    _dist(tmp_path, "torch", "2.13.0+cpu", "sympy>=1.13")
    for name in ("sympy", "old", "other-extra", "unused", "profiler"):
        _dist(tmp_path, name, "1.0")
    pins = tool.closure("app", ["dev"], ["torch"], path=[str(tmp_path)])
    assert pins == {"dev-tool": "3.3", "engine": "2.0", "lib-b": "1.4", "speedup": "0.9"}


def test_a_missing_dependency_is_named(tmp_path):
    _dist(tmp_path, "app", "0.1", "ghost>=1")
    with pytest.raises(SystemExit, match="ghost.*required by app.*make install"):
        tool.closure("app", [], [], path=[str(tmp_path)])


def test_constraints_txt_is_this_environment():
    """The committed pins are the versions installed here, where the tests run: rerun `make constraints`
    (after the tests pass) when a dependency changes. A package needed only on another platform or Python
    (so not pinned here) is tolerated; a direct dependency of translearn is not."""
    pinned, needed = tool.read(ROOT / "constraints.txt"), tool.closure()
    stale = [d for d in tool.differences(pinned, needed) if "pinned None" not in d]
    assert not stale, f"constraints.txt is stale (run `make constraints`): {stale}"
    direct = {tool.canonicalize_name(tool.Requirement(r).name) for r in tool.metadata.requires("translearn")}
    lowered = {tool.canonicalize_name(name) for name in pinned}
    assert direct - lowered == {"torch"}, "every dependency but torch is pinned"
    assert {"pytorch-lightning", "hydra-core", "torchmetrics", "numpy", "hatchling", "optuna"} <= lowered
    assert not lowered & {"torch", "translearn", "sympy", "networkx", "triton"}
    assert not any(name.startswith("nvidia") for name in lowered)


def test_pyproject_keeps_ranges():
    deps = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
    assert "torch>=" in deps and "==" not in deps


def test_check_mode_reports_a_stale_pin(tmp_path, capsys):
    stale = tool.read(ROOT / "constraints.txt") | {"numpy": "0.0.1"}
    (tmp_path / "c.txt").write_text("".join(f"{k}=={v}\n" for k, v in stale.items()))
    assert tool.main([str(tmp_path / "c.txt"), "--check"]) == 1
    assert "numpy: pinned 0.0.1, installed " in capsys.readouterr().out
