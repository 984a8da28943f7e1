"""Synthetic cross-domain data from shared latent user factors (the default data and the test fixture).

Generative story, with ``k = latent_dim``:
- every user has a shared taste ``z_u ~ N(0, I_k)``; in domain d the taste is
  ``p_ud = similarity * z_u + sqrt(1 - similarity^2) * e_ud`` with private ``e_ud ~ N(0, I_k)``,
  so ``similarity`` is the correlation of a user's tastes across domains (1: same, 0: unrelated);
- items have factors ``q_i ~ N(0, I_k)`` and a popularity bias ``b_i ~ N(0, popularity^2)``;
- a user picks ``n_ud`` distinct items by Gumbel-top-n on ``(p_ud . q_i / sqrt(k) + b_i) / noise``;
- a rating 1..5 follows the affinity; the order key is a random time, unless ``sequential > 0`` (below);
- item text: topics are directions in the latent space with their own words; an item's words are drawn
  from topics in proportion to ``softmax(q_i . t_j)``, so text carries the item factors (shared across
  domains, which is what lets text bridge platforms with no common users).

Text with less signal (``text_signal = t < 1``): each word's topic is, with probability ``1 - t``,
redrawn uniformly from all topics, so at ``t = 0`` the words are independent of the item factors (text
with no signal). The redraws come from their own generator, so everything else (and at ``t = 1``, the
default, the text too) is exactly the data and fingerprint of before the knob.

Order with signal (``sequential = s > 0``): every item sits on one ring shared by all domains, at the
angle of its first two latent factors. A user's items of every domain form one walk: it starts at a
random item and each next step goes, with probability ``s``, to the user's nearest not yet visited
item ahead on the ring (of any domain), otherwise to a random not yet visited one. The order key is the
step number, so the next item is likely near the previous one, also across domains: an interleaved
history carries signal for the target. The items chosen are the same as with ``s = 0``; only the order
changes, and ``s = 0`` (the default) gives exactly the data and fingerprint of before the knob.

Large sets (``candidates = c``): each user chooses among ``c`` items drawn uniformly for that user (the
Gumbel-top-n runs inside this pool), so generation costs O(users x c) instead of O(users x items). The
choice is still driven by tastes and popularity, only less sharply. ``null`` (the default) scores every
item and gives exactly the data of before the knob. Either way memory is bounded: users are scored in
blocks of at most ``_BLOCK_ELEMENTS`` scores.

``overlap`` is the fraction of users active in every domain; the others are active in exactly one.
Transfer helps when ``similarity`` is high and the target is sparse, and hurts when ``similarity`` is 0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.schema import CrossDomainData

_BLOCK_ELEMENTS = 1 << 22  # scores per block of users ([block, items or candidates] float64: 32 MiB)
_SYLLABLES = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "va", "ze", "bo", "du", "fi", "gu", "ha", "je"]


@dataclass(frozen=True)
class SyntheticSource:
    """Knobs of the generator. ``domains[-1]`` is conventionally the (sparse) target.

    num_items and interactions_per_user give one value per domain (mean interactions per active user).
    """

    domains: tuple[str, ...] = ("source", "target")
    num_users: int = 1500
    num_items: tuple[int, ...] = (600, 400)
    interactions_per_user: tuple[float, ...] = (25.0, 6.0)
    min_interactions: int = 3
    overlap: float = 0.8
    similarity: float = 0.9
    noise: float = 0.3
    popularity: float = 0.5
    latent_dim: int = 8
    num_topics: int = 12
    words_per_topic: int = 20
    words_per_item: int = 10
    sequential: float = 0.0
    candidates: int | None = None
    text_signal: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("domains", "num_items", "interactions_per_user"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        n = len(self.domains)
        if n < 1 or len(set(self.domains)) != n:
            raise ValueError(f"synthetic: domains must be distinct names, got {self.domains}")
        for name in ("num_items", "interactions_per_user"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"synthetic: {name} needs one value per domain ({n}), got {getattr(self, name)}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"synthetic: overlap must be in [0, 1], got {self.overlap}")
        if not 0.0 <= self.similarity <= 1.0:
            raise ValueError(f"synthetic: similarity must be in [0, 1], got {self.similarity}")
        if self.noise <= 0:
            raise ValueError(f"synthetic: noise must be > 0, got {self.noise}")
        if not 0.0 <= self.sequential <= 1.0:
            raise ValueError(f"synthetic: sequential must be in [0, 1], got {self.sequential}")
        if not 0.0 <= self.text_signal <= 1.0:
            raise ValueError(f"synthetic: text_signal must be in [0, 1], got {self.text_signal}")
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"synthetic: candidates must be null or >= 1, got {self.candidates}")
        if self.sequential > 0 and self.latent_dim < 2:
            raise ValueError(f"synthetic: sequential > 0 needs latent_dim >= 2 (the ring), got {self.latent_dim}")

    def fingerprint(self) -> str:
        params = asdict(self)
        if params["sequential"] == 0.0:
            del params["sequential"]  # the data of before the knob keeps its fingerprint (and cache entries)
        if params["candidates"] is None:
            del params["candidates"]
        if params["text_signal"] == 1.0:
            del params["text_signal"]
        return hashlib.sha256(("synthetic|" + json.dumps(params, sort_keys=True)).encode()).hexdigest()

    def load(self) -> CrossDomainData:
        return build_cross_domain(self._generate()[0])

    def item_ring(self) -> dict[str, np.ndarray]:
        """Ring position in [0, 1) of every item, per domain ([num_items], item index = raw id): the
        coordinate the ``sequential`` walk follows (for tests and oracles; regenerates the data)."""
        return {name: _ring(q) for name, q in self._generate()[1].items()}

    def item_factors(self) -> dict[str, np.ndarray]:
        """Latent factors ``q_i`` of every item, per domain (float64 [num_items, latent_dim], item index =
        raw id): what item text carries (for tests and oracles; regenerates the data)."""
        return self._generate()[1]

    def _generate(self) -> tuple[dict[str, RawDomain], dict[str, np.ndarray]]:
        """The raw domains and each domain's item factors [num_items, latent_dim]."""
        rng = np.random.default_rng(self.seed)
        k, n_dom = self.latent_dim, len(self.domains)
        shared = rng.standard_normal((self.num_users, k))
        topics = rng.standard_normal((self.num_topics, k))
        vocab = _topic_words(self.num_topics, self.words_per_topic, rng)
        active = _active_domains(self.num_users, n_dom, self.overlap, rng)
        activity = rng.lognormal(0.0, 0.5, self.num_users)
        activity /= activity.mean()
        rho = self.similarity
        raw: dict[str, RawDomain] = {}
        factors: dict[str, np.ndarray] = {}
        for d, name in enumerate(self.domains):
            taste = rho * shared + np.sqrt(1.0 - rho**2) * rng.standard_normal((self.num_users, k))
            n_items = self.num_items[d]
            item_factors = rng.standard_normal((n_items, k))
            bias = self.popularity * rng.standard_normal(n_items)
            users = np.flatnonzero(active[:, d])
            choosable = n_items if self.candidates is None else min(n_items, self.candidates)
            counts = np.clip(np.round(self.interactions_per_user[d] * activity[users]).astype(int),
                             self.min_interactions, max(self.min_interactions, choosable // 2))
            u, i, affinity = self._choose(taste[users], item_factors, bias, counts, rng)
            u = users[u]
            ratings = np.clip(np.round(3.0 + 1.2 * affinity + 0.5 * rng.standard_normal(len(u))), 1, 5)
            item_ids = np.arange(n_items)
            factors[name] = item_factors
            signal = (self.text_signal, np.random.default_rng([self.seed, 2, d]))
            raw[name] = RawDomain(
                users=u, items=i, ratings=ratings.astype(np.float32), order=rng.uniform(0, 1e6, len(u)),
                catalog=item_ids, item_text=_item_text(item_factors, topics, vocab, self.words_per_item, rng, signal),
                item_attributes=np.array([f"{name} catalogue"] * n_items),
            )
        if self.sequential > 0:
            self._walk(raw, {name: _ring(q) for name, q in factors.items()})
        return raw, factors

    def _walk(self, raw: dict[str, RawDomain], ring: dict[str, np.ndarray]) -> None:
        """Replace every domain's order key by the step number of each user's walk over the ring (in place).
        Its own generator, so the rest of the data is the same as with ``sequential = 0``."""
        rng = np.random.default_rng([self.seed, 1])
        names = list(raw)
        users = np.concatenate([raw[n].users for n in names])
        theta = np.concatenate([ring[n][raw[n].items] for n in names])
        order = np.zeros(len(users))
        by_user = np.argsort(users, kind="stable")
        starts = np.flatnonzero(np.r_[True, users[by_user][1:] != users[by_user][:-1]])
        for rows in np.split(by_user, starts[1:]):
            order[rows] = _walk_steps(theta[rows], self.sequential, rng)
        ends = np.cumsum([len(raw[n].users) for n in names])
        for name, part in zip(names, np.split(order, ends[:-1]), strict=True):
            raw[name] = replace(raw[name], order=part)

    def _choose(self, taste: np.ndarray, items: np.ndarray, bias: np.ndarray, counts: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gumbel-top-n per user, in blocks of users. ``taste`` [U, k], ``items`` [I, k], ``bias`` [I],
        ``counts`` [U]. Returns (row in taste, item, standardised affinity), each [sum(counts)]."""
        pool = None if self.candidates is None or self.candidates >= len(items) else self.candidates
        width = len(items) if pool is None else pool
        block = max(1, min(4096, _BLOCK_ELEMENTS // width))
        scale = 1.0 / np.sqrt(self.latent_dim)
        out_u, out_i, out_a = [], [], []
        for start in range(0, len(taste), block):
            rows_taste, n = taste[start : start + block], counts[start : start + block]
            if pool is None:
                affinity = rows_taste @ items.T * scale  # [B, I]
                logits = (affinity + bias) / self.noise + rng.gumbel(size=affinity.shape)
                ids = None
            else:
                ids = np.sort(rng.integers(0, len(items), size=(len(rows_taste), pool)), axis=1)  # [B, P]
                affinity = np.einsum("bk,bpk->bp", rows_taste, items[ids]) * scale
                logits = (affinity + bias[ids]) / self.noise + rng.gumbel(size=affinity.shape)
                logits[:, 1:][ids[:, 1:] == ids[:, :-1]] = -np.inf  # an item drawn twice competes once
            ranked = _top_n(logits, min(int(n.max()), width))
            take = np.arange(ranked.shape[1])[None, :] < n[:, None]
            rows, chosen = np.nonzero(take)[0], ranked[take]
            if ids is not None:  # a pool with fewer distinct items than the count: never take a duplicate
                keep = np.isfinite(logits[rows, chosen])
                rows, chosen = rows[keep], chosen[keep]
            out_u.append(rows + start)
            out_i.append(chosen if ids is None else ids[rows, chosen])
            out_a.append(affinity[rows, chosen])
        return np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_a)


def _ring(factors: np.ndarray) -> np.ndarray:
    """[num_items] angle in [0, 1) of each item's first two factors (all zero when latent_dim < 2)."""
    if factors.shape[1] < 2:
        return np.zeros(len(factors))
    return np.mod(np.arctan2(factors[:, 1], factors[:, 0]) / (2 * np.pi), 1.0)


def _top_n(logits: np.ndarray, n: int) -> np.ndarray:
    """[B, n] column indices of each row's n largest logits, largest first (ties are measure-zero)."""
    if n < logits.shape[1]:
        part = np.argpartition(-logits, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(logits.shape[1]), logits.shape)
    order = np.argsort(-np.take_along_axis(logits, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _walk_steps(theta: np.ndarray, p_near: float, rng: np.random.Generator) -> np.ndarray:
    """Step number [M] of each of one user's M ring positions ``theta`` (in [0, 1)) in a walk that goes to the
    nearest unvisited position ahead with probability ``p_near``, else to a random unvisited one."""
    m = len(theta)
    step = np.zeros(m)
    left = np.ones(m, dtype=bool)
    cur = int(rng.integers(m))
    for t in range(m):
        step[cur], left[cur] = t, False
        if t == m - 1:
            break
        free = np.flatnonzero(left)
        if rng.random() < p_near:
            cur = int(free[np.argmin(np.mod(theta[free] - theta[cur], 1.0))])
        else:
            cur = int(free[rng.integers(len(free))])
    return step


def _active_domains(num_users: int, n_dom: int, overlap: float, rng: np.random.Generator) -> np.ndarray:
    """[num_users, n_dom] bool: overlapping users are active everywhere, the rest in one random domain."""
    active = np.zeros((num_users, n_dom), dtype=bool)
    shared = rng.random(num_users) < overlap
    active[shared] = True
    single = np.flatnonzero(~shared)
    active[single, rng.integers(0, n_dom, len(single))] = True
    return active


def _topic_words(num_topics: int, per_topic: int, rng: np.random.Generator) -> np.ndarray:
    """[num_topics, per_topic] distinct pseudo-words made of three syllables."""
    total = num_topics * per_topic
    codes = rng.choice(len(_SYLLABLES) ** 3, size=total, replace=False)
    n = len(_SYLLABLES)
    words = [_SYLLABLES[c // (n * n)] + _SYLLABLES[(c // n) % n] + _SYLLABLES[c % n] for c in codes]
    return np.array(words).reshape(num_topics, per_topic)


def _item_text(factors: np.ndarray, topics: np.ndarray, vocab: np.ndarray, n_words: int,
               rng: np.random.Generator, signal: tuple[float, np.random.Generator | None] = (1.0, None)) -> np.ndarray:
    """[num_items] titles: each word from a topic drawn with probability softmax(q_i . t_j).

    ``signal = (t, side_rng)``: with probability ``1 - t`` a word's topic is replaced by a uniform draw of
    ``side_rng`` (``rng`` is consumed exactly as with ``t = 1``)."""
    logits = factors @ topics.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)
    draws = rng.random((len(factors), n_words))
    topic = np.minimum((draws[:, :, None] > cdf[:, None, :]).sum(-1), len(topics) - 1)  # [I, W]
    strength, side = signal
    if strength < 1.0:
        noisy = side.random(topic.shape) >= strength
        topic[noisy] = side.integers(0, len(topics), int(noisy.sum()))
    word = rng.integers(0, vocab.shape[1], size=topic.shape)
    tokens = vocab[topic, word]
    return np.array([" ".join(row) for row in tokens])
