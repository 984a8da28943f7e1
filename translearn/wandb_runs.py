"""W&B runs read back as records ``{config, summary, run, ...}``: offline run folders, or a project online.

Offline (tested): ``offline_runs(roots)`` finds every ``wandb/*run-*/run-<id>.wandb`` under the given
folders (translearn run folders, sweep folders, or ``wandb/`` folders) and reads each file with
``translearn.wandb_file``; no W&B service, network or API key is involved.

Online (not testable here, no network): ``project_runs("entity/project")`` lists a project's runs
through ``wandb.Api()``.

Both give ``WandbRun``s; ``WandbRun.record()`` is the plain dict ``translearn-compare`` reads: ``config``
(the resolved translearn config, plus ``data_manifest`` and ``hydra_overrides`` when translearn logged
them), ``summary`` (for translearn runs: the keys of ``metrics.json``, plus ``gain/...``, or ``error`` for
a failed job), ``run`` (the translearn run folder for an offline run, ``entity/project/id`` online),
``folder`` (the translearn run folder when it is on this machine, online runs included: their config's
``paths.output_dir``; else ``""``) and the W&B identity fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from translearn.wandb_file import iter_records


@dataclass
class WandbRun:
    """One W&B run as logged.

    history:   one dict per ``log`` call, in order (``_step`` included)
    artifacts: ``{"name", "type", "aliases", "files", "metadata"}`` per logged artifact
    state:     ``finished`` (exit code 0), ``failed`` (another exit code), ``running`` (no exit record: still
               running, or killed); online, W&B's own state
    run:       the translearn run folder (offline: the folder that holds ``wandb/``) or ``entity/project/id``
    folder:    the translearn run folder if it exists on this machine (per-user metrics, checkpoints), else ""
    """

    id: str
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "running"
    exit_code: int | None = None
    run: str = ""
    file: str = ""
    folder: str = ""

    def record(self) -> dict[str, Any]:
        """The run as the plain dict ``translearn-compare`` reads (no history, no artifacts)."""
        return {"config": self.config, "summary": self.summary, "run": self.run, "folder": self.folder, "id": self.id,
                "project": self.project, "entity": self.entity, "group": self.group,
                "job_type": self.job_type, "name": self.name, "tags": list(self.tags), "state": self.state}


# ---------------------------------------------------------------- offline


def _set(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = target.get(key)
        if not isinstance(node, dict):
            node = target[key] = {}
        target = node
    target[keys[-1]] = value


def _drop(target: dict, keys: list[str]) -> None:
    for key in keys[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(keys[-1], None)


def _keys(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _history_value(item: Any) -> Any:
    """A history item's value: the typed one-of of newer SDKs, else the JSON text."""
    try:
        kind = item.WhichOneof("value")
    except ValueError:  # an SDK whose HistoryItem has only value_json
        kind = None
    if kind == "none":
        return None
    if kind == "json":
        return json.loads(item.json)
    if kind is not None:
        return getattr(item, kind)
    return json.loads(item.value_json) if item.value_json else None


def _apply(target: dict, updates: Iterable[Any], removes: Iterable[Any] = ()) -> None:
    for item in updates:
        _set(target, _keys(item), json.loads(item.value_json))
    for item in removes:
        _drop(target, _keys(item))


def _artifact(record: Any) -> dict[str, Any]:
    return {"name": record.name, "type": record.type, "aliases": list(record.aliases),
            "files": {entry.path: entry.size for entry in record.manifest.contents},
            "metadata": json.loads(record.metadata) if record.metadata else {}}


def read_offline_run(path: str | Path) -> WandbRun:
    """Read one run from its ``run-<id>.wandb`` file or the run folder that holds it (``offline-run-*``)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise FileNotFoundError(f"{path}: no run-*.wandb file in this W&B run folder")
        path = files[0]
    run = WandbRun(id=path.stem.removeprefix("run-"), file=str(path))
    # <translearn run>/wandb/offline-run-<time>-<id>/run-<id>.wandb
    run.run = str(path.parent.parent.parent) if path.parent.parent.name == "wandb" else str(path.parent)
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.project, run.entity = r.run_id or run.id, r.project, r.entity
            run.group, run.job_type, run.name, run.tags = r.run_group, r.job_type, r.display_name, list(r.tags)
            _apply(run.config, r.config.update, r.config.remove)
            _apply(run.summary, r.summary.update, r.summary.remove)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, _keys(item), _history_value(item))
            run.history.append(row)
        elif kind == "artifact":
            run.artifacts.append(_artifact(record.artifact))
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
            run.state = "finished" if run.exit_code == 0 else "failed"
    run.config.pop("_wandb", None)
    run.summary.pop("_wandb", None)
    run.folder = run.run if (Path(run.run) / "wandb").is_dir() else _local_folder(run.config)
    return run


def _local_folder(config: Mapping[str, Any]) -> str:
    """The run folder a translearn config names (``paths.output_dir``) when it is on this machine, else ""."""
    paths = config.get("paths")
    folder = paths.get("output_dir") if isinstance(paths, Mapping) else None
    return str(folder) if isinstance(folder, str) and Path(folder).is_dir() else ""


def run_files(roots: Iterable[str | Path]) -> list[Path]:
    """Every ``run-*.wandb`` file under ``roots`` (each a run file, a W&B run folder or any folder above)."""
    found: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(p for p in root.rglob("run-*.wandb") if p.parent.name.startswith(("offline-run-", "run-"))
                         or p.parent == root)
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")
    return sorted(set(found))


def offline_runs(roots: Iterable[str | Path]) -> list[WandbRun]:
    """Every W&B run stored under ``roots``, read from its ``.wandb`` file, in path order."""
    return [read_offline_run(path) for path in run_files(roots)]


# ---------------------------------------------------------------- online (needs network and an API key)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def project_runs(project: str, filters: Mapping[str, Any] | None = None, api: Any = None) -> list[WandbRun]:
    """The runs of ``project`` (``entity/project``, or ``project`` for your default entity) through
    ``wandb.Api()``; ``filters`` is W&B's MongoDB-style run filter, e.g. ``{"group": "2026-01-02_10-00-00"}``.

    Not exercised by the tests (they have no network); ``api`` lets a caller pass its own ``wandb.Api``.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    try:  # lazy=False: config and summary come with the listing, not one request per run (older wandb: no lazy)
        listing = api.runs(project, filters=dict(filters or {}), lazy=False)
    except TypeError:
        listing = api.runs(project, filters=dict(filters or {}))
    out = []
    for r in listing:
        summary = getattr(r, "summary_metrics", None) or getattr(r.summary, "_json_dict", None) or dict(r.summary)
        run = WandbRun(id=r.id, project=r.project, entity=r.entity, group=r.group or "", job_type=r.job_type or "",
                       name=r.name or "", tags=list(r.tags or []), config=_plain(dict(r.config)),
                       summary=_plain(dict(summary)), state=r.state, run="/".join(r.path))
        run.config.pop("_wandb", None)
        run.summary.pop("_wandb", None)
        run.folder = _local_folder(run.config)
        out.append(run)
    return out


def read_runs(source: str | Path) -> list[dict[str, Any]]:
    """Records of ``source``: an existing file or folder (offline runs under it), else a W&B project
    (``entity/project``, read online)."""
    if Path(source).exists():
        return [run.record() for run in offline_runs([source])]
    return [run.record() for run in project_runs(str(source))]
