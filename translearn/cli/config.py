"""Where the Hydra configs live, the ``translearn_root`` and ``translearn_mode`` resolvers, and composing
configs from Python.

Configs are the top-level ``conf/`` folder of a checkout (or ``translearn/conf`` inside an installed
wheel). A dotted override that names a nested config group, e.g. ``data.split=cold_start``, selects
that group's option, exactly like ``data/split=cold_start``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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


def group_options(group: str) -> list[str]:
    """Option names of a config group such as ``strategy`` or ``data/split``."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def normalise_overrides(overrides: Sequence[str]) -> list[str]:
    """Rewrite ``a.b=option`` to ``a/b=option`` when ``a/b`` is a nested config group."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        bare = key.lstrip("+~")
        if sep and "." in bare and "@" not in bare and (config_dir() / bare.replace(".", "/")).is_dir():
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
