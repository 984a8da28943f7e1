"""``Evaluator``: the ranking evaluation of a strategy, for training and the tools alike.

It holds one metric set per (stage, loader name) (``translearn.evaluation.loaders``), masks and ranks a
batch's candidates (``rank_into``), keeps the scratch buffers the score matrices reuse, and the test
stage's per-user rows. A strategy owns one (``TransferStrategy.evaluator``) and delegates its
validation and test steps to it; scores come from ``translearn.evaluation.scoring``.

Metric keys: ``<stage>/<loader name>/<metric>`` (``val/target/ndcg@10``, ``test/target/sampled/hr@10``,
``test/arts/ndcg@10``). Metrics hold sum states that are not part of the state dict, so checkpoints
carry no evaluation state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from translearn.evaluation.chunked import rank_by_item_chunks
from translearn.evaluation.loaders import TARGET, TARGET_SAMPLED, EvalLoader, eval_loaders
from translearn.evaluation.scoring import candidate_scores, full_scores, item_scorer
from translearn.metrics import rank_targets, ranking_metrics, rating_metrics
from translearn.metrics.guards import check_finite_scores
from translearn.metrics.per_user import gather_rows, per_user_means
from translearn.metrics.ranking import RankedTargets
from translearn.models.recommender import ItemScorer

STAGES = ("val", "test")
REPEATS = ("mask", "keep")
MAX_SCORES = 1 << 26  # 256 MB of float32 scores per batch (512 rows x 131,072 items) before item chunks


class Evaluator(nn.Module):
    """Ranking evaluation of the target (and of ``sources``, the evaluated source domains).

    target_domain:  the domain whose held-out items are ranked under the ``target`` loaders
    ks, metrics:    cut-offs and metric names (``translearn.metrics.ranking_metrics``)
    repeats:        ``mask`` or ``keep``: what full ranking does with a held-out item that is also a known
                    item (see ``rank_into``)
    ratings:        also report MAE / RMSE of the held-out ratings (a loss that trains on ratings)
    sources:        source domains with held-out rows to rank (full ranking over their items)
    max_scores:     full ranking: the most scores one batch holds at once; a batch of B rows over more than
                    ``max_scores / B`` items is scored and ranked over item chunks with the same ranks
                    (``translearn.evaluation.chunked``); None: whole rows always (``evaluation.max_scores``)
    """

    def __init__(self, target_domain: str, ks: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = ("hr", "ndcg", "mrr", "recall", "precision"), repeats: str = "mask",
                 ratings: bool = False, sources: Sequence[str] = (), max_scores: int | None = MAX_SCORES) -> None:
        if repeats not in REPEATS:
            raise ValueError(f"evaluation.repeats must be one of {', '.join(REPEATS)}, got {repeats!r}")
        if max_scores is not None and max_scores < 1:
            raise ValueError(f"evaluation.max_scores must be a whole number >= 1 or null, got {max_scores!r}")
        self.max_scores = max_scores
        super().__init__()
        self.target_domain = target_domain
        self.ks, self.metric_names = [int(k) for k in ks], list(metrics)
        self.repeats, self.ratings = repeats, ratings
        self.sources = list(sources)
        known = [*eval_loaders(target_domain, "full", True, self.sources)]
        self.known: dict[str, EvalLoader] = {loader.name: loader for loader in known}
        # module names cannot hold "." (a domain name may): sets are named by stage and position
        self._slot = {name: i for i, name in enumerate(self.known)}
        self.sets = nn.ModuleDict({f"{stage}{i}": nn.ModuleDict(self.metric_set())
                                   for stage in STAGES for i in range(len(known))})
        self.active: dict[str, list[EvalLoader]] = {}
        # the middle of a loader's keys when it is not the loader's name (a source stage: the validated domain)
        self.labels: dict[str, str] = {}
        self._needs_ties = "auc" in self.metric_names
        self._scratch: dict[str, Tensor] = {}
        self._test_users: list[Tensor] = []

    @property
    def default_loaders(self) -> list[EvalLoader]:
        """The loaders of a bare data module: the target (primary protocol), then each source."""
        return [self.known[TARGET], *(self.known[d] for d in self.sources)]

    def metric_set(self) -> dict[str, Metric]:
        """A fresh ``{name: Metric}`` of the configured metrics (``hr@10``, ..., ``mae`` and ``rmse`` with ratings)."""
        out = ranking_metrics(self.ks, self.metric_names)
        if self.ratings:
            out.update(rating_metrics())
        return out

    def metrics(self, stage: str, name: str = TARGET) -> nn.ModuleDict:
        """The metric set of ``stage`` (``val`` / ``test``) and loader ``name``."""
        if name not in self._slot:
            raise KeyError(f"no evaluation loader {name!r}; this evaluator has {', '.join(self.known)}")
        return self.sets[f"{stage}{self._slot[name]}"]

    # ---- a stage ---------------------------------------------------------------------------------
    def begin(self, stage: str, loaders: Sequence[EvalLoader]) -> None:
        """Start ``stage`` over the data module's ``loaders`` (checked against what this evaluator ranks)."""
        for loader in loaders:
            mine = self.known.get(loader.name)
            if mine is None or mine.domain != loader.domain:
                raise ValueError(f"{stage}: evaluation loader {loader.name!r} (domain {loader.domain!r}) is not one "
                                 f"this strategy evaluates ({', '.join(self.known)}; eval_domains {self.sources})")
        self.active[stage] = list(loaders)
        if stage == "test":
            self._test_users = []
            for metric in self.metrics("test").values():
                if hasattr(metric, "rows"):
                    metric.rows = []

    def loader(self, stage: str, index: int) -> EvalLoader | None:
        """The ``index``-th loader of the running ``stage``; None outside a stage (the target, primary)."""
        loaders = self.active.get(stage)
        return loaders[index] if loaders else None

    @torch.no_grad()
    def update(self, strategy: Any, batch: dict[str, Tensor], stage: str, loader: EvalLoader | None = None) -> None:
        """Score ``batch`` with ``strategy`` (``scoring``) and update the metric set of (``stage``, ``loader``);
        ``loader`` None: the target's primary protocol."""
        sampled = "candidates" in batch
        if loader is not None and sampled != (loader.protocol == "sampled"):
            raise ValueError(f"evaluation loader {loader.name!r} is {loader.protocol} ranking, but its batch "
                             f"{'has' if sampled else 'lacks'} sampled candidates")
        loader = loader or self.known[TARGET]
        metrics = self.metrics(stage, loader.name)
        scorer = None if sampled else self.chunk_scorer(strategy, batch, loader.domain)
        if scorer is not None:
            n_items = strategy.model.item_encoder(loader.domain).num
            ranked = rank_by_item_chunks(scorer, batch, n_items, self.max_scores, self.repeats, self._needs_ties,
                                         lambda numel: self.buffer("scores", (numel,), batch["users"].device),
                                         loader.domain)
            self.update_metrics(strategy, ranked, batch, metrics, loader.domain)
        else:
            self.rank_into(strategy, self.scores(strategy, batch, loader.domain), batch, metrics, loader.domain)
        if stage == "test" and loader.name == TARGET:
            self._test_users.append(batch["users"].detach().cpu())

    def chunk_scorer(self, strategy: Any, batch: dict[str, Tensor], domain: str) -> ItemScorer | None:
        """The item scorer of a full-ranking ``batch`` whose [B, I] scores exceed ``max_scores`` (it is ranked
        over item chunks), or None: the whole matrix at once (the fast path; also for a strategy that scores
        only whole rows, e.g. fusion's per-row standardisation)."""
        if self.max_scores is None:
            return None
        n_items = strategy.model.item_encoder(domain).num
        if len(batch["users"]) * n_items <= self.max_scores:
            return None
        return item_scorer(strategy, domain, batch)

    def scores(self, strategy: Any, batch: dict[str, Tensor], domain: str | None = None) -> Tensor:
        """[B, C] sampled-candidate scores, or [B, I] full-ranking scores of ``domain`` (in a reused buffer)."""
        domain = domain or self.target_domain
        if "candidates" in batch:
            return candidate_scores(strategy, domain, batch, batch["candidates"])
        users = batch["users"]
        n_items = strategy.model.item_encoder(domain).num
        return full_scores(strategy, domain, batch, out=self.buffer("scores", (len(users) * n_items,), users.device))

    def rank_into(self, strategy: Any, scores: Tensor, batch: dict[str, Tensor], metrics: nn.ModuleDict,
                  domain: str | None = None) -> None:
        """Mask known items (full ranking; modifies ``scores`` [B, I]), rank the targets, update ``metrics``
        (``domain``: the evaluated domain, default the target; ``strategy`` predicts ratings for MAE / RMSE)."""
        check_finite_scores(scores, domain or strategy.target_domain, batch["users"])  # an error, never ranked
        targets = batch["targets"]
        if "candidates" not in batch:
            # Known items are masked. A held-out item that is also known (a repeat) gets its score back
            # (repeats="keep") or the lowest finite score (repeats="mask"): it stays counted as a
            # candidate (``n_candidates`` includes it) and ranks after every unmasked item.
            safe = torch.where(targets >= 0, targets, targets[:, :1])  # pads point at the row's first target
            kept = scores.gather(1, safe)
            scores[batch["exclude_rows"], batch["exclude_cols"]] = float("-inf")
            if self.repeats == "mask":
                masked = scores.gather(1, safe)
                kept = torch.where(masked == float("-inf"), torch.finfo(scores.dtype).min, masked)
            scores.scatter_(1, safe, kept)
        ranked = rank_targets(scores, targets, n_candidates=batch.get("n_candidates"),
                              workspace=self.buffer("ranking", (scores.numel(),), scores.device),
                              count_ties=self._needs_ties)
        self.update_metrics(strategy, ranked, batch, metrics, domain)

    def update_metrics(self, strategy: Any, ranked: RankedTargets, batch: dict[str, Tensor], metrics: nn.ModuleDict,
                       domain: str | None = None) -> None:
        """Update ``metrics`` with a batch's ``ranked`` targets (MAE / RMSE: the strategy's predicted ratings)."""
        target_items = batch["candidates"][:, :1] if "candidates" in batch else batch["targets"]
        for name, metric in metrics.items():
            if name in ("mae", "rmse"):
                mask = (target_items >= 0) & ~torch.isnan(batch["ratings"])
                pred = candidate_scores(strategy, domain or self.target_domain, batch, target_items.clamp(min=0))
                metric.update(pred[mask], batch["ratings"][mask])
            else:
                metric.update(ranked)

    def buffer(self, name: str, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """A float32 scratch tensor reused across evaluation batches (freed by ``results``): a fresh 30 MB
        score matrix per batch costs more in page faults than the ranking itself."""
        numel = 1
        for n in shape:
            numel *= n
        buf = self._scratch.get(name)
        if buf is None or buf.numel() < numel or buf.device != device:
            buf = self._scratch[name] = torch.empty(numel, device=device)
        return buf[:numel].view(shape)

    def results(self, stage: str, skip: Sequence[str] = ()) -> dict[str, Tensor]:
        """``{key: value}`` of every metric set the stage's loaders filled (all but the loader names in ``skip``),
        computed (synchronised across processes by torchmetrics) and reset; frees the scratch buffers."""
        self._scratch.clear()
        out = {}
        for loader in self.active.get(stage) or self.default_loaders[:1]:
            if loader.name in skip:
                continue
            for metric_name, metric in self.metrics(stage, loader.name).items():
                out[f"{stage}/{self.labels.get(loader.name, loader.name)}/{metric_name}"] = metric.compute()
                metric.reset()
        return out

    def per_user(self, all_gather: Callable[[Tensor], Tensor], world_size: int = 1) -> tuple:
        """(users [U], {metric: [U]}): the test stage's per-user means of each ranking metric's row values,
        gathered from every process (``translearn.metrics.per_user``)."""
        users = gather_rows(self._test_users, all_gather, world_size).long().numpy()
        values = {}
        for name, metric in self.metrics("test").items():
            if getattr(metric, "rows", None) is not None:
                values[name] = gather_rows(metric.rows, all_gather, world_size).double().numpy()
                metric.rows = None
        return per_user_means(users, values)


__all__ = ["MAX_SCORES", "REPEATS", "STAGES", "TARGET", "TARGET_SAMPLED", "Evaluator"]
