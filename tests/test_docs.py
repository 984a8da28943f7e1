"""The documentation runs: the fenced examples of README.md and docs/*.md, checked or executed.

- ```python blocks run as scripts (one subprocess for all; cwd and cache in a tmp folder), with every
  ``max_epochs=N`` cut to ``max_epochs=2`` so the whole module stays cheap.
- Shell blocks: every ``translearn-train`` / ``translearn-data`` command composes its config (sweeps
  expanded), which catches renamed keys and options; a block marked ``<!-- docs-test: run -->`` also
  runs, on tiny synthetic sizes.
- A block right after ``<!-- docs-test: output -->`` is the printed output of the runnable block above
  it: its lines must appear in the output in order, ``...`` standing for any text (numbers that vary).
- ``<!-- docs-test: module NAME.py -->`` blocks are written together to NAME.py (importable by the
  blocks marked ``pytest NAME.py``, whose ``test_*`` functions are called, and ``run NAME.py``).
- ``<!-- docs-test: skip (reason) -->`` leaves a block out; commands with placeholders (``<time>``,
  ``/path/to``) are left out too. ``test_lists_what_it_skips`` prints both lists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from translearn.cli.config import compose

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
SHELL = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARK = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
PLACEHOLDERS = ("<time>", "RUNS...", "/path/to", "/data/mine")
TINY = ["data.dataset.num_users=200", "data.dataset.num_items=[60,40]", "data.batch_size=256", "trainer.max_epochs=1",
        "strategy.stage.max_epochs=1", "logger=none"]
TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language tag, the docs-test mark before it, its text."""

    file: Path
    line: int
    lang: str
    mark: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            out.append(Block(path, line, m.group(1), mark.group(1) if mark else "", m.group(2)))
    return out


ALL = blocks()


def _env(tmp: Path, extra_path: Path | None = None) -> dict:
    paths = [str(p) for p in (extra_path, ROOT) if p is not None]
    return {**os.environ, "WANDB_MODE": "offline", "TRANSLEARN_CACHE_DIR": str(tmp / "cache"),
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


def _shrink(code: str) -> str:
    return re.sub(r"max_epochs=\d+", "max_epochs=2", code)


def _expected_output(block: Block) -> Block | None:
    """The ``docs-test: output`` block right after ``block`` in its file, if any."""
    later = [b for b in ALL if b.file == block.file and b.line > block.line]
    return later[0] if later and later[0].mark == "output" else None


def _check_output(expected: Block, printed: str) -> None:
    """Each expected line matches a printed line, in order; ``...`` matches any text."""
    lines = [ln.rstrip() for ln in printed.splitlines()]
    at = 0
    for want in (ln.rstrip() for ln in expected.body.splitlines() if ln.strip()):
        pattern = re.compile(".*?".join(re.escape(p) for p in want.split("...")) + "$")
        hits = [i for i in range(at, len(lines)) if pattern.match(lines[i])]
        assert hits, f"{expected.where}: the docs show {want!r}, not printed (after line {at}):\n{printed[-3000:]}"
        at = hits[0] + 1


def _modules(tmp: Path) -> Path:
    """Write every ``module NAME.py`` block group to tmp/NAME.py; returns tmp."""
    groups: dict[str, list[str]] = {}
    for b in ALL:
        if b.mark.startswith("module "):
            groups.setdefault(b.mark.split()[1], []).append(b.body)
    for name, parts in groups.items():
        (tmp / name).write_text("\n\n".join(parts))
    return tmp


# ------------------------------------------------------------------------------------------ python blocks
SCRIPTS = [b for b in ALL if b.lang == "python" and not b.mark]
# One interpreter runs every example (each as __main__, its stdout captured) and the extension's test
# functions, so torch and Lightning are imported once: the module stays cheap.
RUNNER = """
import contextlib, importlib, io, json, runpy, sys, traceback
results = {}
for path in sys.argv[2:]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            if path.startswith("test:"):
                module = importlib.import_module(path[5:])
                for name in sorted(n for n in vars(module) if n.startswith("test_")):
                    getattr(module, name)()
                    print("passed", name)
            else:
                runpy.run_path(path, run_name="__main__")
        results[path] = {"ok": True, "stdout": out.getvalue()}
    except BaseException:
        results[path] = {"ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()}
open(sys.argv[1], "w").write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, dict]:
    """Run every python example and the extension tests once; ``{block.where or 'test:...': result}``."""
    import json

    tmp = tmp_path_factory.mktemp("docs")
    folder = _modules(tmp)
    paths = {}
    for i, b in enumerate(SCRIPTS):
        paths[b.where] = tmp / f"example_{i}.py"
        paths[b.where].write_text(_shrink(b.body))
    for i, b in enumerate(ALL_TESTS):
        (folder / f"test_doc_{i}.py").write_text(b.body)
        paths[b.where] = f"test:test_doc_{i}"
    results = tmp / "results.json"
    done = subprocess.run([sys.executable, "-c", RUNNER, str(results), *map(str, paths.values())], cwd=tmp,
                          env=_env(tmp, folder), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    by_path = json.loads(results.read_text())
    return {where: by_path[str(p)] for where, p in paths.items()}


ALL_TESTS = [b for b in ALL if b.mark.startswith("pytest ")]


@pytest.mark.parametrize("block", SCRIPTS, ids=[b.where for b in SCRIPTS])
def test_python_example_runs(block, executed):
    result = executed[block.where]
    assert result["ok"], f"{block.where} failed:\n{result['error'][-3000:]}"
    expected = _expected_output(block)
    if expected is not None:
        _check_output(expected, result["stdout"])


def test_extension_module_and_its_tests_run(executed):
    assert ALL_TESTS, "no 'docs-test: pytest' block found"
    for b in ALL_TESTS:
        result = executed[b.where]
        assert result["ok"], f"{b.where}: the documented test fails:\n{result['error'][-3000:]}"
        assert "passed test_" in result["stdout"]


# ------------------------------------------------------------------------------------------- shell blocks
def commands(block: Block) -> list[str]:
    """Command lines of a shell block: continuations joined, comment lines and trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.body)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        out.append(shlex.join(words))
    return out


def _program(words: list[str]) -> tuple[str, list[str]]:
    """(translearn program name or first word, arguments), skipping ``VAR=value`` prefixes."""
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    name = Path(words[0]).name if words else ""
    return name, words[1:]


def _compositions(args: list[str]) -> list[list[str]]:
    """Override lists to compose for a command's arguments: a sweep gives one list per value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {i: [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
              for i, o in enumerate(parsed) if o.is_sweep_override()}
    base = [sweeps[i][0] if i in sweeps else o for i, o in enumerate(overrides)]
    out = [base]
    for i, values in sweeps.items():
        out += [[*base[:i], v, *base[i + 1:]] for v in values[1:]]
    return out


SHELL_BLOCKS = [b for b in ALL if b.lang in SHELL and not b.mark.startswith("skip")]
CHECKED = [(b, c) for b in SHELL_BLOCKS for c in commands(b)
           if _program(shlex.split(c))[0] in ("translearn-train", "translearn-data")
           and not any(p in c for p in PLACEHOLDERS)]


@pytest.mark.parametrize(("block", "command"), CHECKED, ids=[f"{b.where}:{c[:60]}" for b, c in CHECKED])
def test_shell_command_composes(block, command, tmp_path):
    _, args = _program(shlex.split(command))
    for overrides in _compositions(args):
        try:
            compose(overrides, output_dir=tmp_path)
        except Exception as err:  # noqa: BLE001 - any failure is the docs' fault; show which line
            pytest.fail(f"{block.where}: `{command}` does not compose with {overrides}: {type(err).__name__}: {err}")


RUN = [b for b in ALL if b.lang in SHELL and b.mark.split()[:1] == ["run"]]


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_marked_shell_block_runs(block, tmp_path, run_cli, monkeypatch):
    # The console scripts' entry points in this process (run_cli), the block's modules on the import path.
    if len(block.mark.split()) > 1:
        monkeypatch.syspath_prepend(str(_modules(tmp_path)))
    printed = []
    for n, command in enumerate(commands(block)):
        name, args = _program(shlex.split(command))
        assert name.startswith("translearn-"), f"{block.where}: only translearn-* commands can run: {command}"
        tiny = [] if name == "translearn-data" else [*TINY, f"hydra.run.dir={tmp_path / f'run{n}'}"]
        done = run_cli(name, [*args, *tiny], tmp_path, env={"TRANSLEARN_CACHE_DIR": str(tmp_path / "cache")})
        assert done.returncode == 0, f"{block.where}: `{command}` failed:\n{done.stderr[-3000:]}"
        printed.append(done.stdout)
    # Comment lines that start with "#   " show the command's output: they must be printed as shown.
    shown = [ln.strip()[1:].strip() for ln in block.body.splitlines() if ln.strip().startswith("#   ")]
    for line in shown:
        assert any(line in out for out in printed), f"{block.where}: the docs show {line!r}, not printed"


# ------------------------------------------------------------------------------------------- bookkeeping
def test_lists_what_it_skips(capsys):
    """Every block is accounted for: run, checked, an output, part of a module, or skipped with a reason."""
    skipped = [f"{b.where} ({b.mark.removeprefix('skip').strip(' ()')})" for b in ALL if b.mark.startswith("skip")]
    assert all(re.search(r"\(.+\)", b.mark) for b in ALL if b.mark.startswith("skip")), "a skip needs a (reason)"
    unchecked = []
    for b in SHELL_BLOCKS:
        for c in commands(b):
            name = _program(shlex.split(c))[0]
            if any(p in c for p in PLACEHOLDERS) or (name.startswith("translearn-") and "--help" in c):
                unchecked.append(f"{b.where}: {c}")
            elif name not in ("translearn-train", "translearn-data") and b not in RUN:
                pytest.fail(f"{b.where}: `{c}` is neither checked nor marked; add <!-- docs-test: skip (why) -->")
    known = {"", "output", "run"}
    for b in ALL:
        head = b.mark.split(" ", 1)[0]
        assert b.mark in known or head in ("skip", "module", "pytest", "run"), f"{b.where}: unknown mark {b.mark!r}"
    with capsys.disabled():
        print(f"\ndocs-test: {len(SCRIPTS)} python examples run, {len(CHECKED)} commands composed, {len(RUN)} shell "
              f"blocks run; skipped blocks: {'; '.join(skipped)}\ncommands with placeholders or --help, not run: "
              f"{'; '.join(unchecked)}")
    assert len(SCRIPTS) >= 4 and len(CHECKED) >= 20
