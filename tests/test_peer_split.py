"""Our Arts -> Office leave-one-out split is the RecBole peer's split, target for target.

The peer tool (../shared/tools/peer-recbole/prepare.py, standard library only, a few seconds) writes
``ao-office/office_loo_split.csv`` (user_id,item_id,position,role) from the raw shared files; the test
runs it into a temporary folder and compares its valid and test targets, in raw ids, with ours.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from translearn.build import build_data
from translearn.cli.config import compose

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
PEER = DATA_ROOT.parent / "tools" / "peer-recbole" / "prepare.py"  # the shared folder holds data/ and tools/


def _peer_targets(out: Path) -> dict[str, set[tuple[int, int]]]:
    if not PEER.is_file():
        pytest.skip(f"the RecBole peer tool is not at {PEER}")
    for need in ("amazon-arts-office/raw", "movielens-100k/ml-100k.inter"):  # prepare.py reads both
        if not (DATA_ROOT / need).exists():
            pytest.skip(f"shared data {need} not found under {DATA_ROOT} (set TRANSLEARN_DATA_ROOT)")
    subprocess.run([sys.executable, str(PEER), "--data", str(DATA_ROOT), "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    targets: dict[str, set[tuple[int, int]]] = {"valid": set(), "test": set()}
    with open(out / "ao-office" / "office_loo_split.csv", newline="") as f:
        for row in csv.DictReader(f):
            targets[row["role"]].add((int(row["user_id"]), int(row["item_id"])))
    return targets


def test_arts_office_leave_one_out_matches_the_recbole_peer(tmp_path):
    peer = _peer_targets(tmp_path / "peer")
    assert len(peer["valid"]) == 9_573 and len(peer["test"]) == 9_577  # the counts the tool's README gives
    cfg = compose(["data=arts_office", f"paths.data_root={DATA_ROOT}"])
    assert cfg.data.split.ties == "file_order"
    prepared = build_data(cfg.data, cache_dir=None)
    dom = prepared.data.domain("office")
    for role in ("valid", "test"):
        held = prepared.held_out(role)
        ours = set(zip(prepared.data.user_ids[held.users].tolist(), dom.item_ids[held.items].tolist(), strict=True))
        assert len(ours) == len(held)
        assert ours == peer[role], (role, len(ours ^ peer[role]))
