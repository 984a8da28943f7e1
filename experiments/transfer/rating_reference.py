"""Non-learned rating predictors for the cold-start rating tables (MovieLens genres, comedy target).

Prints test RMSE and MAE of the training global mean and of the per-item training mean (shrunk toward
the global mean with 5 pseudo-ratings) on the cold-start users' comedy ratings, for the same split as
``run.py ml100k_genres_cold{20,50,80}_rating`` (data.seed 0).

    .venv/bin/python experiments/transfer/rating_reference.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from translearn.data import DropInvalid, prepare
from translearn.data.sources import MovieLens
from translearn.data.splits import ColdStartUsers

ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[3] / "shared" / "data"))
SHRINK = 5.0


def main() -> None:
    source = MovieLens(ROOT / "movielens-100k", genre_domains={"comedy": ["Comedy"], "other": ["*"]})
    print("| cold users | predictor | test RMSE | test MAE | test ratings |\n|---|---|---|---|---|")
    for fraction in (0.2, 0.5, 0.8):
        prepared = prepare(source, "comedy", ["other"], preprocess=[DropInvalid(rating_min=1, rating_max=5)],
                           split=ColdStartUsers(holdout_fraction=fraction), seed=0)
        train, test = prepared.train("comedy"), prepared.held_out("test")
        mean = float(train.ratings.mean())
        n_items = prepared.num_items("comedy")
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
