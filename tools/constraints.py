"""Write constraints.txt: the exact versions of everything translearn[dev,sweep,text,image] needs, as installed now.

``make install`` installs with ``pip install -c constraints.txt``, so a fresh clone gets the versions the
tests passed with; ``pyproject.toml`` keeps open ranges for library users. ``make constraints`` runs this
after the tests pass:

    python tools/constraints.py constraints.txt            # rewrite the file from this environment
    python tools/constraints.py constraints.txt --check    # exit 1 and list the differences

The pins are the dependency closure of the installed translearn (its extras included), walked through each
package's metadata, so tools installed by hand (a profiler, a notebook) are not pinned. torch is not walked:
its build is ``TORCH_SPEC``'s choice (CPU here, CUDA elsewhere), and packages only torch needs (sympy,
networkx, nvidia-*, triton) stay free, so another torch build or version still installs beside the pins.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "translearn"
EXTRAS = ("dev", "sweep", "text", "image")
FREE = ("torch",)  # neither pinned nor walked into


def _installed(path: list[str] | None) -> dict[str, metadata.Distribution]:
    """Installed distributions by canonical name; the first on the path wins, as for imports."""
    out: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(**({"path": path} if path is not None else {})):
        out.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return out


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def closure(root: str = ROOT, extras: Iterable[str] = EXTRAS, free: Iterable[str] = FREE,
            path: list[str] | None = None) -> dict[str, str]:
    """{distribution name: installed version} of every package ``root[extras]`` needs, found by following
    ``Requires-Dist`` (markers evaluated for this interpreter), without ``root`` itself and without the
    ``free`` packages and what only they need. ``path`` (default ``sys.path``) is where to look."""
    dists = _installed(path)
    skip = {canonicalize_name(n) for n in free} | {canonicalize_name(root)}
    pins: dict[str, str] = {}
    todo, seen = [(canonicalize_name(root), frozenset(extras))], set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        if name not in dists:
            raise SystemExit(f"{name} is needed but not installed (run `make install` first)")
        for line in dists[name].requires or []:
            req = Requirement(line)
            dep = canonicalize_name(req.name)
            if dep in skip or not _applies(req, wanted):
                continue
            if dep not in dists:
                raise SystemExit(f"{req.name} (required by {name}: {line!r}) is not installed "
                                 "(run `make install` first)")
            pins[dists[dep].metadata["Name"]] = dists[dep].version
            todo.append((dep, frozenset(req.extras)))
    return dict(sorted(pins.items(), key=lambda kv: canonicalize_name(kv[0])))


def render(pins: dict[str, str], torch_version: str | None) -> str:
    """The file's text: a header saying where the pins come from, then ``name==version`` lines."""
    head = [f"# Exact versions the tests passed with (python {platform.python_version()}, torch {torch_version},",
            "# not pinned: TORCH_SPEC picks the build). `make install` uses them (pip install -c);",
            "# pyproject.toml keeps the ranges. Regenerate after the tests pass: make constraints."]
    return "\n".join([*head, *(f"{name}=={version}" for name, version in pins.items())]) + "\n"


def read(path: Path) -> dict[str, str]:
    """{name: version} of a constraints file's ``name==version`` lines."""
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{path}:{n}: expected name==version, got {line!r}")
        pins[name.strip()] = version.strip()
    return pins


def differences(pinned: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose pin and installed version differ (or that only one side has)."""
    a = {canonicalize_name(k): (k, v) for k, v in pinned.items()}
    b = {canonicalize_name(k): (k, v) for k, v in installed.items()}
    out = []
    for key in sorted(a.keys() | b.keys()):
        pin, now = a.get(key, (key, None))[1], b.get(key, (key, None))[1]
        if pin != now:
            out.append(f"{(a.get(key) or b[key])[0]}: pinned {pin}, installed {now}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="constraints file to write (or check)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if they differ")
    args = parser.parse_args(argv)
    pins = closure()
    if args.check:
        diff = differences(read(args.file), pins)
        print("\n".join(diff) or f"{args.file}: up to date ({len(pins)} pins)")
        return 1 if diff else 0
    torch = _installed(None).get("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from translearn.cache import atomic_write_bytes

    atomic_write_bytes(args.file, render(pins, torch.version if torch else None).encode())
    print(f"{args.file}: {len(pins)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
