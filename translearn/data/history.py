"""``HistoryIndex``: every user's ordered rows over all domains, in one global item-token space.

This is the one place where "no peeking" is enforced for models that read a user's history:

- **Evaluation queries** (``eval_queries``): the query for a held-out target row ``r`` of user ``u`` holds
  - in the target domain, u's rows ranked before ``r`` by the split's own order (``splits.user_positions``:
    order key, ties by the split's tie rule): TRAIN rows always, VALID rows only when ``r`` is a test row.
    A row of r's own role is never history, so at test time the validation item is history and at
    validation time the test item is not, even when their order keys tie;
  - in every other domain (``scope="all"``), u's TRAIN rows whose order key is strictly smaller than r's
    (two items at the same position, as the Arts/Office pair of alternative next items, never see each
    other; a source row the split held out never shows).
  One query per held-out row: a user with several held-out items (ratio, temporal, cold-start splits)
  gets one cut per item.
- **Latest queries** (``latest_queries``, for ``translearn-recommend``): a user's last rows after the data
  ends, in the same order; every row (a deployment reading) or training rows only.
- **Training sequences** (``train_sequences``) are built from training rows only: the TRAIN rows of every
  domain (``PreparedData.domain_roles``; under the target-only splits every source row). A valid or test
  item is never an input or a label.

Rows a split removes (``splits.DROPPED``, e.g. a target-side user's source rows under
``data.split=disjoint_users``) are deleted by ``prepare``, so they are in no history and no sequence.

The index must follow the split's order: target rows are ranked with ``user_positions``, the function the
splits use, under the split's tie rule (``PreparedData.ties``, recorded by ``prepare``), so a change of the
tie rule moves the index with it.

Tokens: 0 is padding; item ``i`` of domain ``domains[d]`` is ``offsets[d] + i + 1``. ``domains`` lists the
sources first and the target LAST (``PreparedData.domains``); under ``scope="target"`` it is ``(target,)``.
Domain ids index ``domains``. Within a user, rows are ordered by order key; rows of different domains with
equal order keys put the target first (so a target label in a training sequence never has a source item of
its own position as input, as at evaluation), then by domain id; rows of one domain keep their split rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from translearn.data.prepared import PreparedData
from translearn.data.splits import TEST, TRAIN, VALID, user_positions
from translearn.errors import UserError

SCOPES = ("target", "all")


class HistoryError(UserError, ValueError):
    """The data cannot give histories (e.g. a domain without an order key) or a bad argument."""


def _query_batch(queries: EvalQueries | LatestQueries, index: np.ndarray) -> dict[str, torch.Tensor]:
    """The query part of rows ``index``, trimmed to their longest history (at least one column):
    {"users" [B], "history" [B, L], "history_domain" [B, L], "history_len" [B]}."""
    lengths = queries.lengths[index]
    width = max(1, int(lengths.max(initial=0)))
    return {"users": torch.from_numpy(queries.users[index]),
            "history": torch.from_numpy(np.ascontiguousarray(queries.history[index, :width])),
            "history_domain": torch.from_numpy(np.ascontiguousarray(queries.history_domain[index, :width])),
            "history_len": torch.from_numpy(lengths)}


@dataclass(frozen=True)
class EvalQueries:
    """One query per held-out target row, right-padded to the longest query.

    users:          int64 [R] user index
    targets:        int64 [R] the held-out item (target-domain item index)
    target_rows:    int64 [R] row of the target domain's interactions that is held out
    history:        int64 [R, L] tokens (0 = padding); position j holds the j-th history item
    history_domain: int64 [R, L] domain id per position (0 on padding: mask with ``lengths``)
    lengths:        int64 [R] number of history items (may be 0, e.g. cold-start users under scope target)
    """

    users: np.ndarray
    targets: np.ndarray
    target_rows: np.ndarray
    history: np.ndarray
    history_domain: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows ``index`` as tensors, trimmed to their longest history (at least one column):
        {"users" [B], "targets" [B], "history" [B, L], "history_domain" [B, L], "history_len" [B]}."""
        index = np.asarray(index, dtype=np.int64)
        return {**_query_batch(self, index), "targets": torch.from_numpy(self.targets[index])}


@dataclass(frozen=True)
class LatestQueries:
    """One query per user from the user's latest rows (``HistoryIndex.latest_queries``), right-padded.

    users [U], history [U, L], history_domain [U, L], lengths [U] (as in ``EvalQueries``, no targets).
    """

    users: np.ndarray
    history: np.ndarray
    history_domain: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows ``index`` as a query dict trimmed to their longest history (at least one column):
        {"users" [B], "history" [B, L], "history_domain" [B, L], "history_len" [B]}."""
        return _query_batch(self, np.asarray(index, dtype=np.int64))


@dataclass(frozen=True)
class TrainSequences:
    """Per-user training sequences for one-pass causal training, as compressed rows.

    Sequence s is ``tokens[indptr[s]:indptr[s + 1]]`` (>= 2 rows), with the same slice of ``domain``
    (domain id) and ``items`` (item index within its domain); ``users[s]`` is its user.
    Inputs are ``tokens[:-1]``, labels ``items[1:]`` with domain ``domain[1:]``.
    """

    users: np.ndarray
    indptr: np.ndarray
    tokens: np.ndarray
    domain: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [S] number of rows per sequence (inputs = labels = lengths - 1)."""
        return np.diff(self.indptr)


class HistoryIndex:
    """Compressed per-user rows of ``prepared`` (see the module docstring for the rules).

    Per row, in user-then-history order: ``token``, ``domain`` (id), ``item``, ``order`` (key), ``role``
    (TRAIN / VALID / TEST, from ``PreparedData.domain_roles``), ``rank`` (position within the user's rows of that
    domain, by ``user_positions``) and ``row`` (index in that domain's interactions). User u's rows are
    ``indptr[u]:indptr[u + 1]``.
    """

    def __init__(self, prepared: PreparedData, scope: str = "target", seed: int = 0,
                 domains: Sequence[str] | None = None) -> None:
        if scope not in SCOPES:
            raise HistoryError(f"model.history_scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.scope, self.target = scope, prepared.target
        if domains is None:
            domains = (prepared.target,) if scope == "target" else tuple(prepared.domains)
        self.domains: tuple[str, ...] = tuple(domains)  # token order (a model's table uses the same)
        sizes = [prepared.num_items(d) for d in self.domains]
        self.offsets: dict[str, int] = dict(zip(self.domains, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
        self.num_tokens = 1 + int(sum(sizes))
        self.num_users = prepared.num_users
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "token", "domain", "item", "order", "role",
                                                            "rank", "row", "tie")}
        for d, name in enumerate(self.domains):
            inter = prepared.data.domain(name).interactions
            if inter.order is None:
                raise HistoryError(f"sequence models need an order key (timestamp or position), but domain "
                                   f"{name!r} has none (its data source gives no order)")
            perm, pos, _ = user_positions(inter, seed, prepared.ties)
            rank = np.empty(len(inter), dtype=np.int64)
            rank[perm] = pos
            is_target = name == prepared.target
            parts["user"].append(inter.users)
            parts["item"].append(inter.items)
            parts["token"].append(inter.items + self.offsets[name] + 1)
            parts["domain"].append(np.full(len(inter), d, dtype=np.int64))
            parts["order"].append(inter.order.astype(np.float64))
            parts["role"].append(prepared.role_of(name).astype(np.int8))
            parts["rank"].append(rank)
            parts["row"].append(np.arange(len(inter), dtype=np.int64))
            parts["tie"].append(np.full(len(inter), 0 if is_target else d + 1, dtype=np.int64))
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        perm = np.lexsort((cat["rank"], cat["tie"], cat["order"], cat["user"]))
        self.user = cat["user"][perm].astype(np.int64)
        self.token = cat["token"][perm].astype(np.int64)
        self.domain = cat["domain"][perm]
        self.item = cat["item"][perm].astype(np.int64)
        self.order = cat["order"][perm]
        self.role = cat["role"][perm]
        self.rank = cat["rank"][perm]
        self.row = cat["row"][perm]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.user, minlength=self.num_users))])
        # -1: an index over source domains only (a source stage), which trains but has no target queries
        self.target_id = self.domains.index(prepared.target) if prepared.target in self.domains else -1

    def domain_id(self, domain: str) -> int:
        if domain not in self.domains:
            raise HistoryError(f"domain {domain!r} is not in this history index (scope {self.scope!r}: "
                               f"{', '.join(self.domains)})")
        return self.domains.index(domain)

    def tokens_to_items(self, domain: str, tokens: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Item index within ``domain`` of each token (same shape); -1 for padding or another domain's token."""
        self.domain_id(domain)
        items = tokens - self.offsets[domain] - 1
        inside = (items >= 0) & (items < self._num_items(domain))
        if isinstance(items, torch.Tensor):
            return torch.where(inside, items, torch.full_like(items, -1))
        return np.where(inside, items, -1)

    def items_to_tokens(self, domain: str, items: np.ndarray) -> np.ndarray:
        """Tokens of ``domain``'s item indices (same shape)."""
        self.domain_id(domain)
        return np.asarray(items, dtype=np.int64) + self.offsets[domain] + 1

    def _num_items(self, domain: str) -> int:
        d = self.domain_id(domain)
        end = self.offsets[self.domains[d + 1]] if d + 1 < len(self.domains) else self.num_tokens - 1
        return end - self.offsets[domain]

    # ---- evaluation ---------------------------------------------------------------------------------
    def eval_queries(self, role: str, max_len: int, history_domains: Sequence[str] | None = None) -> EvalQueries:
        """One query per held-out target row of ``role`` ('valid' or 'test'), keeping the LAST ``max_len``
        history items; rows in the order of the target interactions. ``history_domains`` (default: the
        target alone under scope ``target``, every index domain under ``all``) limits what a query shows."""
        if role not in ("valid", "test"):
            raise HistoryError(f"role must be 'valid' or 'test', got {role!r}")
        if max_len < 1:
            raise HistoryError(f"model.max_history must be >= 1, got {max_len}")
        if self.target_id < 0:
            raise HistoryError(f"this history index has no target domain ({', '.join(self.domains)})")
        r = VALID if role == "valid" else TEST
        q = np.flatnonzero((self.domain == self.target_id) & (self.role == r))
        q = q[np.argsort(self.row[q], kind="stable")]
        q_user = self.user[q]
        starts, lens = self.indptr[q_user], self.indptr[q_user + 1] - self.indptr[q_user]
        qi = np.repeat(np.arange(len(q)), lens)
        pos = np.repeat(starts, lens) + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        same = self.domain[pos] == self.target_id
        allowed_role = (self.role[pos] == TRAIN) | ((self.role[pos] == VALID) & (r == TEST))
        if history_domains is None:
            history_domains = (self.target,) if self.scope == "target" else self.domains
        shown = np.isin(self.domain[pos], [self.domain_id(d) for d in history_domains])
        keep = shown & np.where(same, allowed_role & (self.rank[pos] < self.rank[q][qi]),
                                (self.role[pos] == TRAIN) & (self.order[pos] < self.order[q][qi]))
        history, domain, lengths = self._pack(qi[keep], pos[keep], len(q), max_len)
        return EvalQueries(q_user, self.item[q], self.row[q], history, domain, lengths)

    def latest_queries(self, users: np.ndarray, max_len: int, rows: str = "all",
                       history_domains: Sequence[str] | None = None) -> LatestQueries:
        """One query per user of ``users`` [U]: the user's LATEST history, for recommending after the data ends.

        ``rows="all"`` reads every row of the user (train, valid and test; at a deployment reading the
        held-out items are history too); ``rows="train"`` reads training rows only (the TRAIN rows of every
        domain, as training sequences do). Rows are in the index's history order (the split's
        order and tie rule), the LAST ``max_len`` kept; ``history_domains`` as for ``eval_queries``."""
        if rows not in ("all", "train"):
            raise HistoryError(f"rows must be 'all' or 'train', got {rows!r}")
        if max_len < 1:
            raise HistoryError(f"model.max_history must be >= 1, got {max_len}")
        users = np.asarray(users, dtype=np.int64)
        starts, lens = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        qi = np.repeat(np.arange(len(users)), lens)
        pos = np.repeat(starts, lens) + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        if history_domains is None:
            history_domains = (self.target,) if self.scope == "target" else self.domains
        keep = np.isin(self.domain[pos], [self.domain_id(d) for d in history_domains])
        if rows == "train":
            keep &= self.role[pos] == TRAIN
        history, domain, lengths = self._pack(qi[keep], pos[keep], len(users), max_len)
        return LatestQueries(users, history, domain, lengths)

    def _pack(self, qi: np.ndarray, pos: np.ndarray, n: int, max_len: int) -> tuple[np.ndarray, ...]:
        """Right-padded (history [n, L], history_domain [n, L], lengths [n]) from index rows ``pos`` of query
        ``qi`` (grouped by query, in history order), keeping each query's last ``max_len`` rows."""
        counts = np.bincount(qi, minlength=n)
        # index of each kept row counted from the query's end (0 = latest), to keep the last max_len
        from_end = np.repeat(np.cumsum(counts), counts) - np.arange(len(qi)) - 1
        latest = from_end < max_len
        qi, pos, from_end = qi[latest], pos[latest], from_end[latest]
        lengths = np.minimum(counts, max_len).astype(np.int64)
        width = max(1, int(lengths.max(initial=0)))
        col = lengths[qi] - 1 - from_end
        history = np.zeros((n, width), dtype=np.int64)
        domain = np.zeros((n, width), dtype=np.int64)
        history[qi, col] = self.token[pos]
        domain[qi, col] = self.domain[pos]
        return history, domain, lengths

    # ---- training -----------------------------------------------------------------------------------
    def train_sequences(self, max_len: int, domains: Sequence[str] | None = None,
                        long: str = "last") -> TrainSequences:
        """Per user, the training rows of ``domains`` (default: all of the index's) in history order.

        A sequence of n rows trains n - 1 next-item labels. Longer than ``max_len + 1`` rows:
        ``long="last"`` keeps the last ``max_len + 1`` rows (one sequence per user); ``long="windows"``
        cuts it from the end into windows of ``max_len + 1`` rows that overlap by one row, so every label
        is trained exactly once (positions restart at 0 in each window, as in an evaluation query that
        keeps its last ``max_len`` items). Users with fewer than 2 rows give no sequence.
        """
        if max_len < 1:
            raise HistoryError(f"model.max_history must be >= 1, got {max_len}")
        if long not in ("last", "windows"):
            raise HistoryError(f"long must be 'last' or 'windows', got {long!r}")
        ids = [self.domain_id(d) for d in (domains if domains is not None else self.domains)]
        keep = np.flatnonzero((self.role == TRAIN) & np.isin(self.domain, ids))
        users = self.user[keep]
        u_start = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(keep) else np.zeros(0, np.int64)
        u_len = np.diff(np.r_[u_start, len(keep)])
        starts, ends = [], []  # window [start, end) in ``keep`` coordinates
        span = max_len + 1
        for s, n in zip(u_start.tolist(), u_len.tolist(), strict=True):
            end = s + n
            while True:
                start = max(s, end - span)
                if end - start >= 2:
                    starts.append(start)
                    ends.append(end)
                if start == s or long == "last":
                    break
                end = start + 1
        starts_a, ends_a = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        lens = ends_a - starts_a
        flat = keep[np.repeat(starts_a, lens) + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)]
        return TrainSequences(self.user[keep[starts_a]] if len(starts_a) else np.zeros(0, np.int64),
                              np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                              self.token[flat], self.domain[flat], self.item[flat])
