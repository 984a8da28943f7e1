"""What a run records about itself and what is checked against it later.

* Every checkpoint a run saves carries a record (``checkpoint["translearn"]``): the data key
  (``data_manifest_key``), the split key (the data key without the evaluation protocol), the config digest
  and the settings the digest is taken over. ``metrics.json`` carries the same keys.
* The read-only tools (eval, recommend, features, probe) compare the checkpoint's data keys with the data as
  prepared now and refuse a mismatch (``--allow-other-data`` lets it through, and the output says so):
  changed input files re-prepare the data with a new split, and a model then ranks its own training items.
* ``resume=`` refuses a checkpoint of other data, and changed settings that alter results; only the keys in
  ``RESUME_MAY_CHANGE`` may differ (``trainer.max_epochs`` upwards only). ``metrics.json`` then records
  ``resumed_from`` and ``resume_changed``.
* Every failed job writes ``error.json``; an internal error (a bug) also saves its traceback beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from translearn.content_keys import lift_old_keys
from translearn.errors import CheckpointError, ConfigError, error_record, is_user_error

log = logging.getLogger(__name__)
RECORD_KEY = "translearn"  # the key of a checkpoint's run record
TRACEBACK_FILE = "traceback.txt"
# Settings a resumed run may change: where and how it logs, and training for longer. Everything else
# (seed, data, model, strategy, optimiser, evaluation, callbacks' selection rules ...) alters results.
RESUME_MAY_CHANGE = ("trainer.max_epochs", "logger", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
                     "trainer.enable_model_summary", "callbacks.epoch_log", "optimized_metric",
                     "evaluation.max_scores")  # memory of a full-ranking batch, never its ranks
ALLOW_FLAG = "--allow-other-data"


# ---- failures ------------------------------------------------------------------------------------------------


def record_failure(folder: Path, err: BaseException, write: bool = True) -> dict[str, Any]:
    """Write ``error.json`` into ``folder`` (when it is, or can be, a folder) and return the record; an internal
    error also gets its traceback written to ``traceback.txt`` beside it. ``write=False`` (a rank other than 0
    of a multi-process job, whose rank 0 writes the job's one record): the record only."""
    from translearn.cache import atomic_write_bytes, atomic_write_json

    record = error_record(err)
    if not write or (folder.exists() and not folder.is_dir()):
        return record
    try:
        if not is_user_error(err):
            text = "".join(traceback.format_exception(err))
            atomic_write_bytes(folder / TRACEBACK_FILE, text.encode())
            record["traceback"] = TRACEBACK_FILE
        atomic_write_json(folder / "error.json", record)
    except OSError as write_error:  # a read-only or vanished run folder: the message is still printed
        log.warning("could not write error.json into %s: %s", folder, write_error)
    return record


# ---- what a run records ----------------------------------------------------------------------------------------


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings, with no path of this machine or run in them: the ``paths`` node is dropped and every
    value that interpolates it keeps its interpolation text; ``resume`` is dropped too (see ``config_digest``)."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    if "paths" in plain:
        for key in list(plain.paths):
            plain.paths[key] = "\\${paths." + str(key) + "}"  # escaped: resolves to its own text
    container = OmegaConf.to_container(plain, resolve=True)
    container.pop("paths", None)
    container.pop("resume", None)
    return container


def make_record(cfg: DictConfig, prepared: Any, digest: str) -> dict[str, Any]:
    """The record a run's checkpoints carry (``callbacks.RecordInCheckpoints`` puts it into each)."""
    return {"data_manifest_key": prepared.key, "data_split_key": prepared.split_key, "config_digest": digest,
            "settings": settings(cfg)}


# ---- checks of the read-only tools ------------------------------------------------------------------------------


def add_allow_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(ALLOW_FLAG, action="store_true",
                        help="use the checkpoint even if the data as prepared now is not the data it was trained on "
                             "(changed input files or data settings); the output then says so")


def _short(key: str | None) -> str:
    return (key or "?")[:12]


def check_data(ckpt: dict[str, Any], path: str | Path, prepared: Any, run: Path | None = None,
               allow: bool = False) -> str | None:
    """CheckpointError unless the checkpoint at ``path`` was trained on the data in ``prepared`` (the same rows in
    the same train/valid/test roles; another evaluation protocol is fine). With ``allow`` the mismatch is returned
    as a note instead, for the output to carry. A checkpoint without a record (an older run) is compared through
    its run folder's ``metrics.json``, when that lies beside it."""
    record = ckpt.get(RECORD_KEY)
    if isinstance(record, dict) and record.get("data_split_key"):
        same = record["data_split_key"] == prepared.split_key
        saved = record.get("data_manifest_key")
    else:
        saved = _legacy_key(Path(path), run)
        if saved is None:
            return None
        same = saved == prepared.key
    if same:
        return None
    message = (f"checkpoint {path} was trained on data {_short(saved)} but the data as prepared now is "
               f"{_short(prepared.key)} (data_manifest_key): the input files or the data settings changed since "
               "training, so the split differs and its training rows may be scored as held-out")
    if not allow:
        raise CheckpointError(f"{message}; evaluate with the run's own data, or pass {ALLOW_FLAG} to use it anyway",
                              file=path)
    return f"{message}; used anyway ({ALLOW_FLAG})"


def _legacy_key(path: Path, run: Path | None) -> str | None:
    """``metrics.json``'s data key of the run folder the checkpoint lies in (``RUN/checkpoints/x.ckpt``)."""
    folder = path.resolve().parent.parent
    if run is not None and folder != Path(run).resolve():
        return None
    try:
        return json.loads((folder / "metrics.json").read_text()).get("data_manifest_key")
    except (OSError, ValueError, AttributeError):
        return None


# ---- resume ----------------------------------------------------------------------------------------------------


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_MAY_CHANGE)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_resume(ckpt: dict[str, Any], path: str | Path, cfg: DictConfig, prepared: Any) -> dict[str, Any]:
    """Refuse resuming from the checkpoint at ``path`` when its data or its result-altering settings differ from
    this run's, or when ``trainer.max_epochs`` is below the epochs it has finished; returns what ``metrics.json``
    records: ``resumed_from`` and ``resume_changed`` ({key: [before, now]})."""
    done = int(ckpt.get("epoch", -1)) + 1  # epochs finished before the checkpoint was saved
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs != -1 and int(max_epochs) < done:
        raise ConfigError(f"config key 'trainer.max_epochs': resume={path} has finished {done} epochs, more than "
                          f"trainer.max_epochs={max_epochs}; give trainer.max_epochs={done} or more (or a fresh run "
                          "for a shorter one)", config_key="trainer.max_epochs")
    out: dict[str, Any] = {"resumed_from": str(path), "resume_changed": {}}
    record = ckpt.get(RECORD_KEY)
    if not isinstance(record, dict) or "settings" not in record:
        log.warning("resume: checkpoint %s records neither its data nor its settings (an older run); they are not "
                    "checked", path)
        return out
    if record.get("data_manifest_key") != prepared.key:
        raise CheckpointError(f"checkpoint {path} was trained on data {_short(record.get('data_manifest_key'))} but "
                              f"the data as prepared now is {_short(prepared.key)} (data_manifest_key): the input "
                              "files or the data settings changed; resume with the data it was trained on, or start "
                              "a fresh run", file=path)
    saved = copy.deepcopy(record["settings"])  # a copy: an older run's content keys move into model.content
    lift_old_keys(saved.get("model"))
    before, now = _flat(saved), _flat(settings(cfg))
    changed = {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}
    refused = [k for k in changed if not _may_change(k)]
    epochs = changed.get("trainer.max_epochs")
    if epochs and "trainer.max_epochs" not in refused and _lower(*epochs):
        refused.insert(0, "trainer.max_epochs")
    if refused:
        listed = ", ".join(f"{k} {_shown(changed[k][0])} -> {_shown(changed[k][1])}" for k in refused[:4])
        more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        raise ConfigError(f"config key {refused[0]!r}: resume={path} changes settings that alter results: {listed}"
                          f"{more}; a resumed run keeps the checkpoint's settings (only trainer.max_epochs upwards "
                          "and logging keys may change): drop those overrides, or start a fresh run",
                          config_key=refused[0])
    out["resume_changed"] = changed
    return out


def _lower(before: Any, now: Any) -> bool:
    """Whether ``max_epochs`` went down (-1 is no limit)."""
    if before == now:
        return False
    if now == -1:
        return False
    return before == -1 or (isinstance(before, int) and isinstance(now, int) and now < before)
