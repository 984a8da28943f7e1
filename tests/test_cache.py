"""Cache entries verify on load and heal; cache keys follow the code (reference digests tied to versions)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from translearn import stage as stage_module
from translearn.cache import CHECKSUMS, discard_entry, entry_problem, read_entry, read_verified, write_entry
from translearn.data.prepare import FORMAT_VERSION, prepare
from translearn.data.preprocess import Deduplicate
from translearn.data.protocols import SampledNegatives
from translearn.data.sources import SyntheticSource
from translearn.stage import STAGE_VERSION, ensure_stage

# ---- the reference outputs. When a test below fails because the code's output changed on purpose, bump the
# version it names and paste the line the failure prints here (one line each).
PREPARED_REFERENCE = (7, 'ebdcb752a3e0c7a44bef06b4cdbf2d88c0657b81b2ea0fa5e9fa58a4ad03c2f0')
STAGE_REFERENCE = (5, '7fe263a5d0103cdadae4e5a46b28559d84ae658168839078d51fb9ef3f5e19ee')


# ---------------------------------------------------------------- write_entry / read_entry


def _write_two(folder):
    (folder / "a.bin").write_bytes(b"alpha" * 100)
    (folder / "sub").mkdir()
    (folder / "sub" / "b.json").write_text('{"b": 1}')


def test_write_entry_records_a_checksum_of_every_file(tmp_path):
    entry = write_entry(tmp_path / "e", _write_two)
    sums = json.loads((entry / CHECKSUMS).read_text())["sha256"]
    assert sorted(sums) == ["a.bin", "sub/b.json"]
    assert read_verified(entry) and entry_problem(entry) is None
    assert not read_verified(tmp_path / "missing")


@pytest.mark.parametrize("damage, reason", [
    (lambda e: (e / "a.bin").write_bytes(b"alpha" * 50), "a.bin does not match its checksum"),
    (lambda e: (e / CHECKSUMS).write_text(""), f"{CHECKSUMS} is unreadable"),
    (lambda e: (e / CHECKSUMS).unlink(), f"no {CHECKSUMS}"),
    (lambda e: (e / "extra.txt").write_text("x"), "not the ones listed"),
    (lambda e: (e / "sub" / "b.json").unlink(), "not the ones listed"),
])
def test_a_damaged_entry_is_named_discarded_and_reported(tmp_path, caplog, damage, reason):
    entry = write_entry(tmp_path / "e", _write_two)
    damage(entry)
    assert reason in entry_problem(entry)
    with caplog.at_level(logging.WARNING, logger="translearn.cache"):
        assert read_entry(entry, lambda e: pytest.fail("a bad entry must not be loaded"), "test data") is None
    assert "test data cache entry" in caplog.text and reason in caplog.text and "rebuilding" in caplog.text
    assert list(tmp_path.iterdir()) == []  # gone, and the renamed-away copy removed too


def test_a_verified_entry_that_fails_to_load_is_discarded(tmp_path, caplog):
    entry = write_entry(tmp_path / "e", _write_two)

    def load(folder):
        raise ValueError("not what I expected")

    assert read_entry(entry, load, "test data") is None
    assert "failed to load (ValueError: not what I expected)" in caplog.text and not entry.exists()


def test_discard_entry_of_a_missing_entry_is_quiet(tmp_path):
    discard_entry(tmp_path / "gone")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- prepared data heals


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path):
    path.write_bytes(b"")


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 8] = bytes(b ^ 0xFF for b in data[mid: mid + 8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("file, damage", [("arrays/t.users.npy", _truncate), ("manifest.json", _empty),
                                          ("arrays/t.items.npy", _flip_middle)])
def test_a_corrupt_prepared_entry_is_rebuilt_once(tmp_path, tiny_data, static_source, caplog, file, damage):
    source = static_source(tiny_data)
    # one negative: user u2 of the target has 4 of its 5 items, so more than 1 would be refused
    build = functools.partial(prepare, source, "t", ["s"], protocol=SampledNegatives(1), cache_dir=tmp_path)
    first = build().digest()  # before the damage: the entry's arrays are mapped, not copied
    (entry,) = [p for p in tmp_path.iterdir()]
    damage(entry / file)
    with caplog.at_level(logging.WARNING):
        again = build()
    assert source.loads == 2  # detected, so rebuilt
    assert f"prepared data cache entry {entry} is bad: {file} does not match its checksum" in caplog.text
    assert again.digest() == first
    assert build().digest() == first and source.loads == 2  # the rebuilt entry is read, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]


# ---------------------------------------------------------------- the stage model heals


def _stage(prepared, cache_dir):
    from translearn.cli.config import compose

    # ks=[2]: the tiny source has 3 items, and a cut-off at or above the candidates is refused
    cfg = compose(["strategy=finetune", "model.embedding_dim=8", "optimizer.lr=0.05", "strategy.stage.max_epochs=2",
                   "evaluation.ks=[2]", "monitor=val/target/ndcg@2",
                   "strategy.stage.batch_size=16", "strategy.stage.seed=3", "logger=none",
                   f"paths.cache_dir={cache_dir}"], output_dir=cache_dir / "run")
    return ensure_stage(cfg, prepared).model


def test_a_corrupt_stage_model_is_retrained_once(tmp_path, tiny_data, static_source, monkeypatch, caplog):
    calls = []
    real = stage_module._train_stage
    monkeypatch.setattr(stage_module, "_train_stage", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    first = _stage(prepared, tmp_path).state_dict()
    (entry,) = (tmp_path / "stage").iterdir()
    (best,) = (entry / "checkpoints").iterdir()
    _flip_middle(best)
    with caplog.at_level(logging.WARNING):
        healed = _stage(prepared, tmp_path).state_dict()
    assert len(calls) == 2 and f"checkpoints/{best.name} does not match its checksum" in caplog.text
    assert healed.keys() == first.keys() and all(torch.equal(healed[k], first[k]) for k in first)
    _stage(prepared, tmp_path)
    assert len(calls) == 2


# ---------------------------------------------------------------- cache keys follow the code


def _fail_message(what: str, version_name: str, file: str, version: int, stored: tuple[int, str], digest: str,
                  line_name: str) -> str:
    if version == stored[0]:
        return (f"the {what} changed, but {version_name} is still {version}: bump {version_name} in {file} "
                f"(old cache entries would be read as if they were new), then set in tests/test_cache.py: "
                f"{line_name} = ({version + 1}, {digest!r})")
    return (f"{version_name} is now {version}: record the new reference output in tests/test_cache.py: "
            f"{line_name} = ({version}, {digest!r})")


def test_prepared_data_output_matches_the_format_version():
    source = SyntheticSource(num_users=40, num_items=(30, 20), interactions_per_user=(6.0, 4.0), num_topics=2,
                             words_per_topic=3, words_per_item=2, seed=5)
    prepared = prepare(source, "target", ["source"], preprocess={"dedup": Deduplicate()},
                       protocol=SampledNegatives(5), seed=1)
    digest = prepared.digest()
    assert (FORMAT_VERSION, digest) == PREPARED_REFERENCE, _fail_message(
        "prepared data", "FORMAT_VERSION", "translearn/data/prepare.py", FORMAT_VERSION, PREPARED_REFERENCE,
        digest, "PREPARED_REFERENCE")


def test_stage_model_output_matches_the_stage_version(tiny_data, static_source, tmp_path):
    torch.manual_seed(0)
    model = _stage(prepare(static_source(tiny_data), "t", ["s"]), cache_dir=tmp_path)
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        # rounded, so that the last bits of float arithmetic on another CPU do not count as a change
        h.update(name.encode() + np.round(value.double().numpy(), 4).tobytes())
    digest = h.hexdigest()
    assert (STAGE_VERSION, digest) == STAGE_REFERENCE, _fail_message(
        "stage model", "STAGE_VERSION", "translearn/stage/entry.py", STAGE_VERSION, STAGE_REFERENCE, digest,
        "STAGE_REFERENCE")
