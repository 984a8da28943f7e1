"""Where the Hydra configs live, the ``translearn_root`` and ``translearn_mode`` resolvers, and composing
configs from Python.

Configs are the top-level ``conf/`` folder of a checkout (or ``translearn/conf`` inside an installed
wheel). A dotted override that names a nested config group, e.g. ``data.split=cold_start``, selects
that group's option, exactly like ``data/split=cold_start``; plugin groups (``hydra.launcher=joblib``)
and groups of a user folder on the search path (``hydra.searchpath=[file://DIR]``) count too.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from translearn import distributed as _distributed  # noqa: F401  (registers the translearn_run_stamp resolver)
from translearn.metrics.direction import metric_mode

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The checkout folder when running from one (it holds pyproject.toml and conf/), else the cwd."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf").is_dir():
        return checkout
    return Path.cwd()


def config_dir() -> Path:
    packaged = PACKAGE_DIR / "conf"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "conf"


if not OmegaConf.has_resolver("translearn_root"):
    OmegaConf.register_new_resolver("translearn_root", lambda: str(project_root()))
if not OmegaConf.has_resolver("translearn_mode"):  # "min" or "max" for a monitored metric name
    OmegaConf.register_new_resolver("translearn_mode", metric_mode)
if not OmegaConf.has_resolver("translearn_direction"):  # the same rule, as Optuna's "minimize" / "maximize"
    OmegaConf.register_new_resolver("translearn_direction", lambda name: metric_mode(name) + "imize")


def group_options(group: str) -> list[str]:
    """Option names of a config group such as ``strategy`` or ``data/split``."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


@lru_cache(maxsize=8)
def _repository(extra: tuple[str, ...]):  # noqa: ANN202  (Hydra's internal ConfigRepository)
    """Hydra's view of every config group: ours, Hydra's own and its plugins' (``hydra/launcher``,
    ``hydra/sweeper``), and the user folders in ``extra`` (``file://...`` or ``pkg://...``)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path

    search = create_config_search_path(f"file://{config_dir()}")
    for path in extra:
        search.append("user", path if "://" in path else f"file://{Path(path).resolve()}")
    return ConfigRepository(search)


def user_config_dirs(args: Sequence[str]) -> tuple[str, ...]:
    """The folders a command line adds to the search path: ``hydra.searchpath=[...]`` and
    ``--config-dir DIR`` / ``-cd DIR``."""
    found: list[str] = []
    for i, item in enumerate(args):
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+~") == "hydra.searchpath":
            found += [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
        elif item in ("--config-dir", "-cd") and i + 1 < len(args):
            found.append(args[i + 1])
        elif key == "--config-dir" and sep:
            found.append(value)
    return tuple(found)


def normalise_overrides(overrides: Sequence[str]) -> list[str]:
    """Rewrite ``a.b=option`` to ``a/b=option`` when ``a/b`` is a nested config group: one of ours, a
    plugin's (``hydra.launcher=joblib``) or one in a user folder on the command line's search path. An old
    content key (``model.item_tower=text``) is a one-line ConfigError naming ``model.content.item_tower``."""
    from translearn.content_keys import moved_key, moved_key_error

    repo = _repository(user_config_dirs(overrides))
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        bare = key.lstrip("+~")
        if moved_key(bare):  # model.item_tower=text: the content keys are model.content.* now
            raise moved_key_error(bare, value if sep else None)
        if sep and "." in bare and "@" not in bare and not bare.startswith("-") \
                and repo.group_exists(bare.replace(".", "/")):
            key = key[: len(key) - len(bare)] + bare.replace(".", "/")
        out.append(f"{key}{sep}{value}")
    return out


def compose(overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | Path | None = None
            ) -> DictConfig:
    """The config a CLI call with these overrides would get, for use from Python and tests.

    ``output_dir`` stands in for Hydra's run folder (``paths.output_dir``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=normalise_overrides(overrides))
    if output_dir is not None:
        OmegaConf.set_struct(cfg, False)
        cfg.paths.output_dir = str(output_dir)
        OmegaConf.set_struct(cfg, True)
    return cfg
