"""The ``model.content`` node: one node for the nine item-content keys, parsed once by ``ContentSpec.of``; the old
keys (``model.item_tower``) refused in one line, and runs saved with them still read by the tools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from translearn.checks import check_config
from translearn.cli.config import compose
from translearn.content_keys import CONTENT_KEYS, content_tower, lift_old_keys, moved_key
from translearn.errors import ConfigError
from translearn.models import gru4rec, matrix_factorization, neural_cf, sasrec
from translearn.models.content import ContentSpec
from translearn.run_record import RECORD_KEY, check_resume, settings


def test_every_content_model_config_holds_the_one_node_and_no_old_key():
    for name in ("mf", "ncf", "sasrec", "gru4rec"):
        model = compose([f"model={name}"]).model
        assert sorted(model.content) == sorted(CONTENT_KEYS), name
        assert ContentSpec.of(model.content) == ContentSpec(), name  # the defaults: the id tower
        assert not set(model) & set(CONTENT_KEYS), name
    graph = compose(["model=lightgcn"]).model
    assert "content" not in graph and content_tower(graph) == "id"  # a graph model reads no item content
    cfg = compose(["model=sasrec", "model.content.item_tower=id_text", "model.content.id_text_mix=gate"])
    assert ContentSpec.of(cfg.model.content) == ContentSpec(item_tower="id_text", id_text_mix="gate")
    assert content_tower(cfg.model) == "id_text"


def test_content_spec_of_takes_a_spec_a_mapping_or_none_and_names_a_bad_key():
    spec = ContentSpec(item_tower="text", feature_norm="whiten")
    assert ContentSpec.of(spec) is spec and ContentSpec.of(None) == ContentSpec()
    assert ContentSpec.of(OmegaConf.create({"item_tower": "image", "image_weights": "w.pt"})) == \
        ContentSpec(item_tower="image", image_weights="w.pt")
    with pytest.raises(ConfigError, match=r"^model.content.item_towr: not a content key; expected one of "
                                          r"item_tower, adaptor, ") as err:
        ContentSpec.of({"item_towr": "text"})
    assert err.value.config_key == "model.content.item_towr" and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^model.content: expected a mapping of item_tower, .* got 'text'"):
        ContentSpec.of("text")
    with pytest.raises(ConfigError, match=r"^model.content.id_text_mix: expected one of sum, gate, got 'max'"):
        ContentSpec.of({"item_tower": "id_text", "id_text_mix": "max"})


@pytest.mark.parametrize("factory", [matrix_factorization, neural_cf, sasrec, gru4rec], ids=lambda f: f.__name__)
def test_every_factory_builds_the_same_model_from_a_spec_a_mapping_or_none(factory):
    """The id tower from ``content=None``, ``{}`` and ``ContentSpec()``: the same parameters at a seed."""
    states = []
    for content in (None, {}, ContentSpec(), {"item_tower": "id", "feature_norm": "none"}):
        torch.manual_seed(0)
        states.append(factory(3, {"t": 4, "s": 5}, embedding_dim=8, content=content).state_dict())
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        assert all(torch.equal(state[k], states[0][k]) for k in state)
    assert not any("content" in k for k in states[0])  # no adaptor: the id tower


def test_an_old_key_is_mapped_to_its_new_place():
    assert [moved_key(f"model.{k}") for k in CONTENT_KEYS] == [f"model.content.{k}" for k in CONTENT_KEYS]
    assert moved_key("model.embedding_dim") is None and moved_key("data.item_tower") is None
    assert moved_key("model.content.item_tower") is None


@pytest.mark.parametrize("override", ["model.item_tower=text", "+model.item_tower=text", "model.feature_norm=whiten"])
def test_an_old_key_on_the_command_line_is_one_line_naming_the_new_key(override, run_cli, tmp_path):
    name = override.lstrip("+").split("=")[0].removeprefix("model.")
    done = run_cli("translearn-train", [override, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines == [f"translearn-train: error: config key 'model.{name}' moved to 'model.content.{name}' (the "
                     f"content keys are one node, model.content); e.g. model.content.{name}="
                     f"{override.split('=')[1]}"], lines
    assert not (tmp_path / "run").exists()  # refused before Hydra made a run folder
    with pytest.raises(ConfigError, match=f"moved to 'model.content.{name}'"):
        compose([override])


def test_an_old_key_in_a_users_own_config_is_refused_by_check_config():
    cfg = compose([])
    OmegaConf.set_struct(cfg, False)
    cfg.model.item_tower = "text"  # e.g. a copied model yaml of before
    with pytest.raises(ConfigError, match=r"^config key 'model.item_tower' moved to 'model.content.item_tower'") as err:
        check_config(cfg)
    assert err.value.config_key == "model.item_tower"


def _old_layout(model: dict) -> dict:
    """A ``model`` node as runs saved it before ``model.content``: the content keys directly under it."""
    out = {k: v for k, v in model.items() if k != "content"}
    out.update(model["content"])
    return out


def test_lift_old_keys_moves_them_into_the_node_and_leaves_new_configs_alone():
    new = OmegaConf.to_container(compose(["model=sasrec", "model.content.item_tower=text"]).model)
    old = _old_layout(new)
    assert lift_old_keys(old) == list(CONTENT_KEYS) and old == new
    assert lift_old_keys(old) == [] and old == new  # a second call changes nothing
    assert lift_old_keys({"_target_": "x.lightgcn", "num_layers": 3}) == []  # no content keys at all


def test_resume_from_a_checkpoint_of_before_the_move_sees_no_changed_setting(tmp_path):
    cfg = compose([], output_dir=tmp_path)
    saved = settings(cfg)
    saved["model"] = _old_layout(saved["model"])

    class Prepared:
        key = "k"

    ckpt = {"epoch": 0, RECORD_KEY: {"data_manifest_key": "k", "settings": saved}}
    assert check_resume(ckpt, "old.ckpt", cfg, Prepared())["resume_changed"] == {}
    assert "item_tower" in ckpt[RECORD_KEY]["settings"]["model"]  # the record itself is not rewritten
    OmegaConf.set_struct(cfg, False)
    cfg.model.content.item_tower = "text"
    with pytest.raises(ConfigError, match=r"config key 'model.content.item_tower': resume=old.ckpt changes settings "
                                          r"that alter results: model.content.item_tower id -> text"):
        check_resume(ckpt, "old.ckpt", cfg, Prepared())


def test_eval_reads_a_run_saved_with_the_old_keys(trained_run, run_cli, tmp_path):
    """A run folder of before the move (its ``.hydra/config.yaml`` with ``model.item_tower`` ...) still loads in
    ``translearn-eval`` and gives the run's own metrics; its weights are named as before."""
    run_dir, _ = trained_run
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    saved = old / ".hydra" / "config.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(saved))
    cfg["model"] = _old_layout(cfg["model"])
    saved.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    assert "item_tower" in OmegaConf.load(saved).model and "content" not in OmegaConf.load(saved).model
    done = run_cli("translearn-eval", [str(old), "--out", str(tmp_path / "e.json")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    again, metrics = json.loads((tmp_path / "e.json").read_text()), json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/target/ndcg@10", "test/target/ndcg@10", "test/target/auc"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key
    wrong = run_cli("translearn-eval", [str(old), "model.item_tower=text"], tmp_path)  # a new override: refused
    assert wrong.returncode == 2 and "moved to 'model.content.item_tower'" in wrong.stderr, wrong.stderr[-2000:]


def test_the_content_keys_are_the_spec_fields():
    from dataclasses import fields

    assert tuple(f.name for f in fields(ContentSpec)) == CONTENT_KEYS
    assert Path(__file__).parents[1].joinpath("conf/model/content/default.yaml").is_file()


def test_the_stage_key_follows_the_content_node(tmp_path):
    """Every ``model.content`` key enters the source stage's cache key: another tower never reads a stage trained
    with this one; and the key is the one the flat keys of before gave."""
    from torch import nn

    from translearn.stage import stage_entry, stage_spec

    class Prepared:
        key = "data"

    def entry(*overrides: str) -> Path:
        cfg = compose(["strategy=finetune", f"paths.cache_dir={tmp_path}", *overrides], output_dir=tmp_path)
        return stage_entry(cfg, Prepared(), stage_spec(cfg), nn.Linear(1, 1))

    base = entry()
    assert entry() == base and base.parent == tmp_path / "stage"
    changed = [entry("model.content.item_tower=text"), entry("model.content.adaptor_experts=4"),
               entry("model.content.text_template='{text} {attributes}'")]
    assert len({base, *changed}) == 4
    # a stage cached before the move (its key hashed the flat keys) is found again: the key reads them flat
    cfg = compose(["strategy=finetune", f"paths.cache_dir={tmp_path}", "model.content.item_tower=text"],
                  output_dir=tmp_path)
    spec = stage_spec(cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.model = _old_layout(OmegaConf.to_container(cfg.model))
    assert "item_tower" in cfg.model and stage_entry(cfg, Prepared(), spec, nn.Linear(1, 1)) == changed[0]


def test_compare_groups_a_run_of_before_with_one_of_now():
    """translearn-compare groups runs by their overrides: ``model.item_tower=text`` (a run of before) and
    ``model.content.item_tower=text`` are one setting."""
    from translearn.compare.runs import _setting_of

    old, new = _setting_of(["model.item_tower=text", "strategy=joint"]), _setting_of(["model.content.item_tower=text",
                                                                                     "strategy=joint"])
    assert old == new == {"model.content.item_tower": "text", "strategy": "joint"}
