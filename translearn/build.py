"""Build the run's parts from a composed config: data, model, strategy, data module, trainer.

Each builder reads only its part of the config and passes typed arguments on, so the parts stay
usable without Hydra (see docs/python_api.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from translearn.checkpoint_io import AtomicCheckpointIO
from translearn.content.catalog import ItemCatalog
from translearn.content.text import unload_encoders
from translearn.content_keys import content_tower
from translearn.data.datamodule import CrossDomainDataModule
from translearn.data.extra_protocol import sampled_view
from translearn.data.facts import DataFacts
from translearn.data.prepare import prepare
from translearn.data.prepared import PreparedData
from translearn.data.protocols import SampledNegatives, check_ranking
from translearn.data.sequence_data import HistorySpec
from translearn.errors import ConfigError
from translearn.evaluation.engine import MAX_SCORES
from translearn.losses import AutoLoss, negatives_to_sample, preferred_loss
from translearn.models.context import ModelContext
from translearn.models.factory import call_factory, declared_reads
from translearn.models.recommender import Recommender
from translearn.progress import is_tty
from translearn.strategies.base import TransferStrategy, source_tower_missing
from translearn.strategies.bridge import check_bridge

log = logging.getLogger(__name__)


def _instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    """``instantiate`` that names the config key in the error and shows the real cause."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"config key {key!r} ({node.get('_target_', '?')}): {cause}", config_key=key) from cause


def evaluated_sources(cfg: DictConfig) -> list[str]:
    """The source domains ``evaluation.domains`` asks to evaluate besides the target: ``source`` names every
    source of ``data.source_domains``, and a domain's own name names it; ``target`` is always evaluated."""
    asked = OmegaConf.select(cfg, "evaluation.domains")
    if asked is None:
        return []
    if isinstance(asked, str) or not OmegaConf.is_list(asked):
        raise ConfigError(f"config key 'evaluation.domains': expected a list such as [target, source], got {asked!r}",
                          config_key="evaluation.domains")
    sources = [str(s) for s in cfg.data.source_domains or []]
    out: list[str] = []
    for name in map(str, asked):
        if name == "target" or name == cfg.data.target_domain:
            continue
        picked = sources if name == "source" else [name]
        if name not in ("source", *sources):
            raise ConfigError(f"config key 'evaluation.domains': {name!r} is neither target, source nor a source "
                              f"domain of data.source_domains ({', '.join(sources) or 'none'})",
                              config_key="evaluation.domains")
        out += [d for d in picked if d not in out]
    if out and _sampled_protocol(cfg):
        raise ConfigError("config key 'evaluation.domains': sources are ranked against all of their items, but the "
                          "primary protocol is sampled (data/protocol=sampled); use data/protocol=full_ranking with "
                          "evaluation.sampled_negatives for sampled target numbers", config_key="evaluation.domains")
    clash = [d for d in out if d in ("target", "sampled")]
    if clash:
        raise ConfigError(f"config key 'evaluation.domains': a source named {clash[0]!r} would log keys that read "
                          f"as the target's (val/{clash[0]}/...); rename the domain", config_key="evaluation.domains")
    return out


def _sampled_protocol(cfg: DictConfig) -> bool:
    """Whether ``data.protocol`` builds a :class:`SampledNegatives` protocol (read from its ``_target_``)."""
    target = OmegaConf.select(cfg, "data.protocol._target_")
    if not target:
        return False
    try:
        cls = get_class(str(target))
    except Exception:  # an unknown class fails later with the instantiation error that names it
        return False
    return isinstance(cls, type) and issubclass(cls, SampledNegatives)


def build_run_data(cfg: DictConfig) -> PreparedData:
    """The data of a run: ``cfg.data``, with the sources ``evaluation.domains`` evaluates held out."""
    return build_data(cfg.data, cfg.paths.cache_dir, evaluated_sources(cfg))


def build_data(data_cfg: DictConfig, cache_dir: str | Path | None,
               held_out_sources: list[str] | None = None) -> PreparedData:
    """Load, preprocess and split (or read the cache) as ``data_cfg`` says."""
    source = _instantiate(data_cfg.dataset, "data.dataset")
    preprocess = {name: _instantiate(step, f"data.preprocess.{name}")
                  for name, step in (data_cfg.get("preprocess") or {}).items() if step is not None}
    return prepare(
        source=source,
        target=data_cfg.target_domain,
        sources=list(data_cfg.source_domains or []),
        preprocess=preprocess,
        split=_instantiate(data_cfg.split, "data.split"),
        protocol=_instantiate(data_cfg.protocol, "data.protocol"),
        seed=int(data_cfg.seed),
        cache_dir=cache_dir,
        held_out_sources=held_out_sources or (),
    )


def strategy_class(cfg: DictConfig) -> type[TransferStrategy]:
    cls = get_class(cfg.strategy._target_)
    if not (isinstance(cls, type) and issubclass(cls, TransferStrategy)):
        raise TypeError(f"config key 'strategy._target_': {cfg.strategy._target_} is not a TransferStrategy")
    return cls


def model_domains(cfg: DictConfig, prepared: PreparedData) -> list[str]:
    """Domains the model needs item towers for: the target, plus the sources if the strategy trains on them,
    the model reads interleaved histories (``model.history_scope=all``, also under target_only), or its
    factory declares a model that reads the sources (``"sources"`` in ``Recommender.reads``: built whole, so
    that a strategy that trains one domain refuses it in ``check_strategy``)."""
    interleaved = cfg.model.get("history_scope") == "all"
    whole = "sources" in _factory_reads(cfg)
    return [prepared.target, *prepared.sources] if strategy_class(cfg).uses_sources or interleaved or whole \
        else [prepared.target]


def _factory_reads(cfg: DictConfig) -> frozenset[str]:
    """``declared_reads`` of ``cfg.model``'s factory; nothing when it does not resolve (building the model then
    reports the bad ``model._target_``)."""
    try:
        return declared_reads(get_method(str(cfg.model.get("_target_"))))
    except Exception:
        return frozenset()


def build_catalog(cfg: DictConfig, prepared: PreparedData) -> ItemCatalog:
    """The item content the model factories read (text, attributes, image paths; features cached under
    ``paths.cache_dir``). Cheap: features are computed only when a content tower asks for them."""
    return ItemCatalog.of(prepared, cfg.paths.get("cache_dir"),
                          max_missing_images=float(cfg.data.get("max_missing_images", 0.5)))


def build_context(cfg: DictConfig, prepared: PreparedData, domains: list[str]) -> ModelContext:
    """What a model factory may know of the data (``ModelContext``): sizes, the item catalogue
    (``build_catalog``), and, built only when a factory asks, the training-only graphs and shared users."""
    return ModelContext.of(prepared, domains, build_catalog(cfg, prepared))


def build_model(cfg: DictConfig, prepared: PreparedData) -> Recommender:
    """The run's model: ``cfg.model``'s factory with ``num_users``, ``num_items`` (the model's domains),
    ``items`` (the ``ItemCatalog``) and ``context`` (``ModelContext``), the last two passed only to factories
    that take them."""
    factory = _instantiate(cfg.model, "model")
    context = build_context(cfg, prepared, model_domains(cfg, prepared))
    model = call_factory(factory, context=context, num_users=context.num_users, num_items=context.num_items)
    unload_encoders()  # a content tower's features are in the model (and cached): free the text encoder
    return model


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def build_loss(cfg: DictConfig, model: Recommender) -> Any:
    """``cfg.loss``; ``loss=auto`` (the default) gives the model's preferred loss (id models BPR, sequence
    models full cross-entropy)."""
    loss = _instantiate(cfg.loss, "loss")
    return preferred_loss(model) if isinstance(loss, AutoLoss) else loss


def check_strategy(cfg: DictConfig, prepared: PreparedData, model: Recommender) -> None:
    """The refusals that need no training: a strategy that does not work with sequence models, and domains that
    share no users without a bridge (``strategies.bridge``). ``train`` runs them before a source stage."""
    cls = strategy_class(cfg)
    if cls.refuses_sequences and model.needs_history:
        raise ConfigError(f"config key 'strategy': {cls.__name__} does not work with sequence models "
                          f"(model={cfg.model._target_.rsplit('.', 1)[-1]}): {cls.refuses_sequences}")
    why = cls.refuses_model(model)  # a graph or paired model the strategy cannot train
    if why:
        raise ConfigError(f"config key 'strategy': {why}", config_key="strategy")
    check_bridge(cls.__name__, cls.user_bridge, DataFacts.of(prepared), content_tower(cfg.model),
                 bool(model.needs_history))
    requested_eval_domains(cfg, model)


def requested_eval_domains(cfg: DictConfig, model: Recommender) -> list[str]:
    """The sources ``evaluation.domains`` asks to rank; one the model cannot rank is refused (asked for
    explicitly, so never dropped)."""
    out = []
    for domain in evaluated_sources(cfg):
        why = source_tower_missing(model, domain)
        if why:
            raise ConfigError(f"config key 'evaluation.domains': {strategy_class(cfg).__name__} cannot evaluate "
                              f"source {domain!r}: {why}; leave it out of evaluation.domains for this strategy",
                              config_key="evaluation.domains")
        out.append(domain)
    return out


def build_strategy(cfg: DictConfig, prepared: PreparedData, model: Recommender,
                   source_model: Recommender | None = None, for_loading: bool = False) -> TransferStrategy:
    """The strategy of ``cfg.strategy`` with ``facts=DataFacts.of(prepared)``. Never trains anything.

    A strategy that starts from a source stage gets ``source_model``; without it, ``for_loading=True`` (the
    read-only tools, which load a run checkpoint next) gives it an untrained model of the stage's shape: the
    checkpoint holds every weight the strategy took from the stage (a teacher, a scorer, reused or mapped
    user vectors; fine-tuning's copy is the model itself). Otherwise the stage is read from
    ``strategy.source_ckpt`` or the cache (``translearn.stage.read_stage``), and a missing one is a
    one-line ``StageMissingError`` naming the command that trains it."""
    from translearn.stage import read_stage, source_shell

    node = {k: v for k, v in _plain(cfg.strategy).items() if k not in ("stage", "source_ckpt")}
    cls = strategy_class(cfg)
    check_strategy(cfg, prepared, model)
    facts = DataFacts.of(prepared)
    eval_domains = requested_eval_domains(cfg, model)
    extra = {}
    if cls.uses_source_model:
        if source_model is None:
            source_model = source_shell(cfg, prepared) if for_loading else read_stage(cfg, prepared)
        extra["source_model"] = source_model
    # The config's own keys go through Hydra; the built objects (model, facts, ...) are passed to the
    # constructor directly (Hydra would try to turn a dataclass argument into config).
    make = _instantiate(OmegaConf.create(node), "strategy", _partial_=True)
    built = dict(
        model=model,
        target_domain=prepared.target,
        source_domains=list(prepared.sources),
        optimizer=_instantiate(cfg.optimizer, "optimizer"),
        scheduler=_instantiate(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None,
        loss=build_loss(cfg, model),
        ks=list(cfg.evaluation.ks),
        metrics=list(cfg.evaluation.metrics),
        repeats=str(cfg.evaluation.get("repeats", "mask")),  # a run saved before the option: the default
        facts=facts,
        **({"eval_domains": eval_domains} if eval_domains else {}),
        **extra,
    )
    try:
        strategy = make(**built)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"config key 'strategy' ({node.get('_target_', '?')}): {err}", config_key="strategy") from err
    strategy.evaluator.max_scores = score_bound(cfg)
    return strategy


def score_bound(cfg: DictConfig) -> int | None:
    """``evaluation.max_scores`` (a run saved before the option: the default bound), checked: the tools read it
    without the training run's value checks."""
    bound = OmegaConf.select(cfg, "evaluation.max_scores", default=MAX_SCORES)
    if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 1):
        raise ConfigError(f"config key 'evaluation.max_scores' must be a whole number >= 1 (or null: no bound), "
                          f"got {bound!r}", config_key="evaluation.max_scores")
    return bound


def train_batch_size(cfg: DictConfig, model: Recommender) -> int:
    """Training rows per step: ``data.batch_size`` for id models, ``data.sequence_batch_size`` (labelled
    positions) for models that read histories; a data config without the latter uses the former."""
    if model.needs_history and cfg.data.get("sequence_batch_size") is not None:
        return int(cfg.data.sequence_batch_size)
    return int(cfg.data.batch_size)


def build_datamodule(cfg: DictConfig, prepared: PreparedData, strategy: TransferStrategy,
                     splits: tuple[str, ...] = ("val", "test")) -> CrossDomainDataModule:
    """The run's batches; ``splits``: the evaluated splits, whose held-out rows must be rankable."""
    num_negatives = negatives_to_sample(int(cfg.data.num_negatives), strategy.model, strategy.loss_fn)
    extra = OmegaConf.select(cfg, "evaluation.sampled_negatives")
    sampled = None
    if extra is not None:
        try:
            sampled = sampled_view(prepared, extra, int(cfg.data.seed), cfg.paths.get("cache_dir"))
        except ValueError as err:
            raise ConfigError(str(err), config_key="evaluation.sampled_negatives") from None
    evaluator = strategy.evaluator
    cut = evaluator.ks if set(evaluator.metric_names) - {"auc", "mae", "rmse"} else []  # metrics with a k
    roles = [{"val": "valid"}.get(split, split) for split in splits]
    check_ranking(prepared, cut, sampled, strategy.eval_domains, roles)  # a protocol that cannot rank is refused
    return CrossDomainDataModule(prepared, strategy.train_domains, batch_size=train_batch_size(cfg, strategy.model),
                                 num_negatives=num_negatives, eval_batch_size=int(cfg.data.eval_batch_size),
                                 seed=int(cfg.seed), history=HistorySpec.of(strategy.model), sampled=sampled,
                                 eval_domains=strategy.eval_domains,
                                 paired="paired" in getattr(strategy.model, "reads", ()), **loader_settings(cfg))


def loader_settings(cfg: DictConfig) -> dict[str, Any]:
    """``loader.num_workers`` and ``loader.pin_memory`` (``auto``: pinned when the trainer runs on a GPU)."""
    loader = cfg.get("loader") or {}
    pin = loader.get("pin_memory", "auto")
    if pin in ("auto", None):
        pin = str(OmegaConf.select(cfg, "trainer.accelerator") or "cpu") in ("gpu", "cuda")
    return {"num_workers": int(loader.get("num_workers", 0) or 0), "pin_memory": bool(pin)}


def build_trainer(cfg: DictConfig, **overrides: Any) -> pl.Trainer:
    loggers = [_instantiate(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]
    callbacks = [_instantiate(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items()
                 if c is not None]
    for lg in loggers:
        if hasattr(lg, "log_hyperparams"):
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    kwargs = {"logger": loggers or False, "callbacks": callbacks, "plugins": [AtomicCheckpointIO()],
              "default_root_dir": cfg.paths.output_dir, **overrides}
    if cfg.get("trainer", {}).get("enable_progress_bar", False) is None:  # null: a bar on terminals only
        kwargs.setdefault("enable_progress_bar", is_tty())
    if not any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks):
        kwargs.setdefault("enable_checkpointing", False)
    return _instantiate(cfg.trainer, "trainer", **kwargs)
