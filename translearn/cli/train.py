"""translearn-train: train one strategy (or a sweep with -m) from the Hydra configs in conf/.

  translearn-train                                   # synthetic data, MF, joint, CPU
  translearn-train data=arts_office strategy=target_only seed=1
  translearn-train -m strategy=target_only,joint seed=0,1,2
  translearn-train --help                            # config groups and options
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from translearn.cli.config import config_dir, normalise_overrides


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    from translearn.train import train

    summary = train(cfg)
    value = summary.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


def main() -> None:
    sys.argv = [sys.argv[0], *normalise_overrides(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
