"""``translearn-recommend``: top-k items with raw ids for raw user ids, from a run folder.

Scores are the run's own, through evaluation's scoring path (``translearn.evaluation.scoring.full_scores``): in
the target domain ``strategy.score_all`` (what evaluation ranks, so a fusion or popularity run recommends as
it was evaluated), in another domain ``model.score_all(domain, query)``; on the run's device (``loaded.device``).
The query of an id model is the user index; of a sequence model, the user's latest history
(``HistoryIndex.latest_queries``: all their rows in the model's history scope, or training rows only under
``exclude="train"``), in the split's order and tie rule. Known items (``known.KnownItems``) are left out;
a non-finite score is an error (``DivergedError``); ties go to the lower item index. A user with fewer than
k candidates left gets a shorter list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from translearn.data.history import HistoryIndex
from translearn.data.prepared import PreparedData
from translearn.evaluation.device import move_batch
from translearn.evaluation.scoring import full_scores
from translearn.metrics.guards import check_finite_scores
from translearn.models.recommender import Query
from translearn.outputs.known import KnownItems
from translearn.outputs.progress import bar, chunks
from translearn.outputs.run import LoadedRun, OutputError

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists: ``items [U, k]`` item indices (-1 past the end of a short list), ``scores [U, k]``
    (NaN there), for users ``users [U]``; ``user_ids`` / ``item_ids`` are the raw-id vocabularies."""

    domain: str
    k: int
    exclude: str
    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def rows(self) -> list[tuple[str, int, str, float]]:
        """(user_id, rank from 1, item_id, score) for every recommended item, user by user."""
        out = []
        for u, items, scores in zip(self.users, self.items, self.scores, strict=True):
            for rank, (i, s) in enumerate(zip(items, scores, strict=True), start=1):
                if i >= 0:
                    out.append((str(self.user_ids[u]), rank, str(self.item_ids[i]), float(s)))
        return out

    def write_csv(self, stream: IO[str]) -> None:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["user_id", "rank", "item_id", "score"])
        writer.writerows((u, r, i, f"{s:.6g}") for u, r, i, s in self.rows())

    def to_json(self) -> dict[str, Any]:
        lists = []
        for u, items, scores in zip(self.users, self.items, self.scores, strict=True):
            keep = items >= 0
            lists.append({"user_id": str(self.user_ids[u]), "items": [str(self.item_ids[i]) for i in items[keep]],
                          "scores": [float(s) for s in scores[keep]]})
        return {"domain": self.domain, "k": self.k, "exclude": self.exclude, "users": lists}

    def write_json(self, stream: IO[str]) -> None:
        json.dump(self.to_json(), stream, indent=1)
        stream.write("\n")


def user_indices(prepared: PreparedData, raw_ids: Sequence[str]) -> np.ndarray:
    """int64 [U] user indices of raw ids (in the given order); an OutputError names the unknown ones."""
    vocab = np.asarray(prepared.data.user_ids).astype(str)
    lookup = {raw: u for u, raw in enumerate(vocab.tolist())}
    missing = [str(r) for r in raw_ids if str(r) not in lookup]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise OutputError(f"--users: unknown user id(s) {shown}: not in the run's data ({len(vocab):,} users, "
                          f"e.g. {', '.join(repr(v) for v in vocab[:3].tolist())})")
    return np.asarray([lookup[str(r)] for r in raw_ids], dtype=np.int64)


class _Queries:
    """Query batches for ``users``: user indices (id models) or latest histories (sequence models)."""

    def __init__(self, loaded: LoadedRun, domain: str, users: np.ndarray, exclude: str) -> None:
        model = loaded.model
        self.users, self.latest, self.device = users, None, loaded.device
        if model.needs_history:
            scope = model.history_scope
            index = HistoryIndex(loaded.prepared, scope=scope, seed=int(loaded.cfg.data.seed),
                                 domains=model.history_domains)
            shown = (domain,) if scope == "target" else model.history_domains
            self.latest = index.latest_queries(users, model.needs_history, rows=exclude, history_domains=shown)

    def batch(self, start: int, end: int) -> Query:
        """The queries of users ``start:end``, on the run's device."""
        if self.latest is None:
            return torch.from_numpy(self.users[start:end]).to(self.device)
        return move_batch(self.latest.batch(np.arange(start, end)), self.device)


def top_k(scores: Tensor, k: int) -> Tensor:
    """[B, k] column indices of each row's k largest ``scores`` [B, N] (k <= N), best first, ties to the lower
    index: what a stable descending sort gives, at the cost of ``topk`` plus a few passes over the row."""
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values  # [B, 1]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(dim=1, keepdim=True)  # how many of the tied entries make the list
    chosen = above | (tied & (tied.cumsum(dim=1) <= need))  # exactly k per row, the lowest tied indices
    cols = chosen.nonzero()[:, 1].view(-1, k)  # per row in index order
    picked = scores.gather(1, cols)
    return cols.gather(1, torch.sort(picked, dim=1, descending=True, stable=True).indices)


@torch.no_grad()
def recommend(loaded: LoadedRun, users: np.ndarray | None = None, k: int = 10, domain: str | None = None,
              exclude: str = "all", batch_size: int = 1024, show: bool | None = None) -> Recommendations:
    """Top-``k`` items of ``domain`` (default: the target) for user indices ``users`` (default: every user)."""
    if k < 1:
        raise OutputError(f"--k must be >= 1, got {k}")
    domain = loaded.domain(domain)
    prepared = loaded.prepared
    users = np.arange(prepared.num_users, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    known = KnownItems.of(prepared, domain, exclude)
    queries = _Queries(loaded, domain, users, exclude)
    n_items = prepared.num_items(domain)
    width = min(k, n_items)
    top_items = np.full((len(users), width), -1, dtype=np.int64)
    top_scores = np.full((len(users), width), np.nan, dtype=np.float32)
    steps = chunks(len(users), batch_size)
    for start, end in bar(steps, len(steps), f"recommend {domain}", show):
        query = queries.batch(start, end)
        scores = full_scores(loaded.strategy, domain, query).float()
        check_finite_scores(scores, domain, torch.from_numpy(users[start:end]), "recommendations")
        ranked = torch.where(torch.isfinite(scores), scores, torch.finfo(scores.dtype).min)
        rows, cols = known.of_users(users[start:end])
        ranked[torch.from_numpy(rows).to(ranked.device), torch.from_numpy(cols).to(ranked.device)] = float("-inf")
        order = top_k(ranked, width)
        valid = ranked.gather(1, order) > float("-inf")
        top_items[start:end] = torch.where(valid, order, -1).cpu().numpy()
        top_scores[start:end] = torch.where(valid, scores.gather(1, order), float("nan")).cpu().numpy()
    return Recommendations(domain, k, exclude, users, top_items, top_scores, prepared.data.user_ids,
                           prepared.data.domain(domain).item_ids)
