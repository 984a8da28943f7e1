"""Non-learned rating predictors for the cold-start rating tables (MovieLens genres, comedy target).

Prints test RMSE and MAE of the training global mean and of the per-item training mean (shrunk toward
the global mean with 5 pseudo-ratings) on the cold-start users' comedy ratings. The data is built from
the same overrides as ``run.py ml100k_genres_cold{20,50,80}_rating`` (``RATING`` there), so the split and
the centred ratings are those of the runs; errors are in rating units (centring shifts both sides).

    .venv/bin/python experiments/transfer/rating_reference.py
"""

from __future__ import annotations

import numpy as np
from run import RATING

from translearn.build import build_data
from translearn.cli.config import compose

SHRINK = 5.0


def main() -> None:
    print("| cold users | predictor | test RMSE | test MAE | test ratings |\n|---|---|---|---|---|")
    for fraction in (0.2, 0.5, 0.8):
        cfg = compose([*RATING, f"data.split.holdout_fraction={fraction}", "strategy=target_only"])
        prepared = build_data(cfg.data, cfg.paths.cache_dir)
        train, test = prepared.train(prepared.target), prepared.held_out("test")
        mean = float(train.ratings.mean())
        n_items = prepared.num_items(prepared.target)
        sums = np.bincount(train.items, train.ratings, minlength=n_items)
        counts = np.bincount(train.items, minlength=n_items)
        item_mean = (sums + SHRINK * mean) / (counts + SHRINK)
        predictors = {"global mean": np.full(len(test.ratings), mean), "item mean": item_mean[test.items]}
        for name, predicted in predictors.items():
            error = predicted - test.ratings
            print(f"| {fraction:.0%} | {name} | {np.sqrt(np.mean(error ** 2)):.4f} | {np.abs(error).mean():.4f} "
                  f"| {len(error):,} |")


if __name__ == "__main__":
    main()
