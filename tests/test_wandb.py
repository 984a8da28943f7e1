"""W&B: a sweep logged offline through ``translearn-train`` and read back from its ``.wandb`` files
(config, data manifest, per-epoch history, summary, gain, checkpoint artifact, one run per job, failed
jobs with their error, no service left running); the run-file reader on hand-written files; the
baseline rule of the gain, in a sweep and among single runs of one group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from translearn.build import build_data
from translearn.cli.config import compose
from translearn.wandb_baseline import RUN_FILE, baseline_candidates, baseline_gain, find_baseline
from translearn.wandb_file import (
    BLOCK,
    CHUNK,
    FIRST,
    FULL,
    HEADER,
    IDENT,
    LAST,
    MAGIC,
    MIDDLE,
    WandbFileError,
    chunk_crc,
    iter_records,
)
from translearn.wandb_runs import offline_runs, read_offline_run, read_runs

BIN = Path(sys.executable).parent


def _services_of(pid: int) -> list[str]:
    """Command lines of live wandb-core processes started for process ``pid`` (they carry ``--pid <pid>``)."""
    lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    found = []
    for line in lines:
        args = line.split()
        after_pid = args[args.index("--pid") + 1:][:1] if "--pid" in args else []
        if args and args[0].endswith("wandb-core") and after_pid == [str(pid)]:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """``translearn-train -m strategy=target_only,joint resume=null,<missing>`` with ``logger=wandb`` offline:
    jobs 0 and 2 train (2 epochs), jobs 1 and 3 fail after their W&B run started (no checkpoint to resume)."""
    tmp = tmp_path_factory.mktemp("wandb")
    folder = tmp / "my-sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "WANDB_API_KEY": "",
           **{k: str(tmp / "home" / k) for k in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")}}
    overrides = ["data.dataset.num_users=200", "data.dataset.num_items=[80,60]", "data.batch_size=128",
                 "trainer.max_epochs=2", f"paths.cache_dir={tmp / 'cache'}"]
    start = time.time()
    proc = subprocess.Popen([str(BIN / "translearn-train"), "-m", *overrides, "logger=wandb",
                             "logger.wandb.log_model=true", "logger.wandb.tags=[smoke]", "strategy=target_only,joint",
                             f"resume=null,{tmp / 'missing'}", f"hydra.sweep.dir={folder}"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    print(f"sweep of 4 jobs with W&B offline: {time.time() - start:.1f}s")
    assert proc.returncode == 2, stderr[-3000:]  # the two failing jobs
    return {"folder": folder, "pid": proc.pid, "overrides": overrides, "cache": tmp / "cache",
            "runs": {Path(r.run).name: r for r in offline_runs([folder])}}


def test_each_job_has_its_own_run_and_failed_ones_are_not_finished(sweep):
    runs = sweep["runs"]
    assert sorted(runs) == ["0", "1", "2", "3"]  # without finishing, later jobs reuse the first job's run
    assert len({r.id for r in runs.values()}) == 4
    assert runs["0"].state == runs["2"].state == "finished"
    assert runs["1"].state == runs["3"].state == "failed" and runs["1"].exit_code != 0
    for job in ("1", "3"):  # finished at once, with what error.json holds, and what they were run on
        error = json.loads((sweep["folder"] / job / "error.json").read_text())
        assert runs[job].summary["error"] == error and "config key 'resume'" in error["message"]
        assert runs[job].config["data_manifest"]["key"] == runs["0"].config["data_manifest"]["key"]
        assert f"resume={sweep['folder'].parent / 'missing'}" in runs[job].config["hydra_overrides"]
    deadline = time.time() + 10  # the W&B service ends with the process (at once, in practice)
    while _services_of(sweep["pid"]) and time.time() < deadline:
        time.sleep(0.2)
    assert not _services_of(sweep["pid"])


def test_identity_config_and_manifest(sweep):
    runs, folder = sweep["runs"], sweep["folder"]
    assert {r.group for r in runs.values()} == {"my-sweep"}  # the sweep folder's name
    assert (runs["0"].job_type, runs["2"].job_type) == ("TargetOnly", "Joint")
    assert (runs["0"].name, runs["2"].name) == ("0-TargetOnly-seed0", "2-Joint-seed0")
    assert runs["2"].project == "translearn" and runs["2"].tags == ["smoke"]
    config = runs["2"].config
    assert config["data"]["dataset"]["num_users"] == 200 and config["trainer"]["max_epochs"] == 2
    assert config["strategy"]["_target_"] == "translearn.strategies.Joint"
    resolved = compose(sweep["overrides"])
    assert set(config) == set(resolved) | {"data_manifest", "hydra_overrides"}  # Lightning's `lam`, `ks`: not on top
    assert config["logger"]["wandb"]["save_dir"] == str(folder / "2")  # resolved, not ${paths.output_dir}
    assert "strategy=joint" in config["hydra_overrides"]
    prepared = build_data(compose(sweep["overrides"]).data, sweep["cache"])  # the cached data of the sweep
    assert config["data_manifest"] == json.loads(json.dumps(prepared.manifest()))
    saved = json.loads((folder / "2" / "metrics.json").read_text())
    assert config["data_manifest"]["key"] == saved["data_manifest_key"]
    side = json.loads((folder / "2" / RUN_FILE).read_text())  # the run folder names its W&B run
    assert (side["id"], side["group"], side["name"]) == (runs["2"].id, "my-sweep", "2-Joint-seed0")
    assert side["offline"] is True
    assert (folder / "2" / side["dir"]).parent == Path(runs["2"].file).parent


def test_per_epoch_history_and_summary_equal_metrics_json(sweep):
    runs, folder = sweep["runs"], sweep["folder"]
    for job in ("0", "2"):
        saved = json.loads((folder / job / "metrics.json").read_text())
        run = runs[job]
        assert {k: run.summary[k] for k in saved} == saved  # every key, the selected checkpoint's values
        val = {row["epoch"]: row["val/target/ndcg@10"] for row in run.history if "val/target/ndcg@10" in row}
        loss = [row["epoch"] for row in run.history if "train/loss" in row]
        assert sorted(val) == loss == [0, 1]  # one row per trained epoch, none for the final re-evaluation
        assert not any(k.startswith("test/") for row in run.history for k in row)
        assert val[saved["best_epoch"]] == pytest.approx(saved["val/target/ndcg@10"], abs=1e-6)
    metrics = [r.metric for r in iter_records(runs["2"].file) if r.WhichOneof("record_type") == "metric"]
    assert [m.step_metric for m in metrics if m.glob_name == "*"][-1] == "epoch"  # charted against the epoch
    assert {m.name: m.step_metric for m in metrics if m.name}["train/loss_step"] == "trainer/global_step"


def test_gain_over_target_only_of_the_same_sweep(sweep):
    runs, folder = sweep["runs"], sweep["folder"]
    base, joint = (json.loads((folder / j / "metrics.json").read_text()) for j in ("0", "2"))
    summary = runs["2"].summary
    assert summary["baseline_run"] == "0"
    for key in ("test/target/ndcg@10", "test/target/hr@10", "test/target/auc"):
        assert summary[f"gain/{key}"] == pytest.approx(joint[key] / base[key] - 1.0, rel=1e-9)
    assert not any(k.startswith("gain/") for k in runs["0"].summary)


def test_checkpoint_artifact(sweep):
    folder, run = sweep["folder"], sweep["runs"]["2"]
    saved = json.loads((folder / "2" / "metrics.json").read_text())
    [artifact] = run.artifacts
    ckpt = folder / "2" / saved["best_checkpoint"]
    assert artifact["type"] == "model" and artifact["name"] == f"model-{run.id}" and "best" in artifact["aliases"]
    assert artifact["files"] == {ckpt.name: ckpt.stat().st_size}
    assert artifact["metadata"]["best_epoch"] == saved["best_epoch"]
    assert artifact["metadata"]["data_manifest_key"] == saved["data_manifest_key"]


def test_records_for_compare(sweep):
    records = {Path(r["run"]).name: r for r in read_runs(sweep["folder"])}
    assert records["2"]["summary"]["test/target/ndcg@10"] == sweep["runs"]["2"].summary["test/target/ndcg@10"]
    assert records["2"]["run"] == str(sweep["folder"] / "2") and records["2"]["state"] == "finished"
    assert set(records["2"]) >= {"config", "summary", "run", "id", "group", "job_type", "name"}


def test_compare_reads_the_sweep_from_wandb_as_from_its_folders(sweep, capsys):
    from translearn.cli.compare import main as compare

    assert compare([str(sweep["folder"]), "--json"]) == 0
    from_folders = json.loads(capsys.readouterr().out)
    assert compare(["--wandb", str(sweep["folder"]), "--json"]) == 0
    from_wandb = json.loads(capsys.readouterr().out)
    pick = ("row", "strategy", "seeds", "mean", "gain", "gain_ci", "verdict")
    assert [{k: r[k] for k in pick} for r in from_wandb["rows"]] == [{k: r[k] for k in pick}
                                                                      for r in from_folders["rows"]]
    assert len(from_wandb["failed"]) == 2
    assert all("failed: config key 'resume'" in f["message"] for f in from_wandb["failed"])


def test_a_run_left_open_from_python_is_finished_as_failed_by_the_next(tmp_path, run_overrides, monkeypatch):
    """``train`` from Python that ends in an error leaves its W&B run open; the next W&B logger of the process
    finishes it as failed (a caller that catches the error and trains again gets two separate runs)."""
    from translearn.train import train
    from translearn.wandb_logging import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(FileNotFoundError, match="config key 'resume'"):
        train(compose([*run_overrides, "logger=wandb", f"resume={tmp_path / 'nowhere'}"], output_dir=tmp_path / "a"))
    nxt = wandb_logger(save_dir=tmp_path / "b", run_facts={"data": "d", "strategy": "x.Joint", "seed": 1})
    nxt.experiment.finish()
    [left] = offline_runs([tmp_path / "a"])
    assert left.state == "failed" and "before its W&B run was finished" in left.summary["error"]["message"]
    assert left.config["data_manifest"]["key"]  # logged before the failure
    deadline = time.time() + 10  # the W&B service may write the end of the file just after finish() returns
    while (done := offline_runs([tmp_path / "b"])[0]).state == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert (done.state, done.name, done.group) == ("finished", "Joint-seed1", "d") and done.id != left.id


class _Api:
    """A stand-in for ``wandb.Api`` serving the sweep's runs as the W&B server would list them (config and
    summary as logged, ``_wandb`` keys included); the tests have no network to reach the real one."""

    def __init__(self, runs):
        self.listed, self.calls = [SimpleNamespace(
            id=r.id, project="translearn", entity="team", group=r.group, job_type=r.job_type, name=r.name,
            tags=r.tags, state=r.state, path=["team", "translearn", r.id], config={**r.config, "_wandb": {"v": 1}},
            summary_metrics={**r.summary, "_wandb": {"runtime": 3}}) for r in runs], []

    def runs(self, path, filters=None, lazy=True):
        self.calls.append((path, filters, lazy))
        return self.listed


def test_online_project_reads_like_the_offline_runs(sweep, capsys, monkeypatch):
    import wandb

    from translearn.cli.compare import main as compare

    api = _Api(sweep["runs"].values())
    monkeypatch.setattr(wandb, "Api", lambda: api)
    online = {Path(r["folder"]).name: r for r in read_runs("team/translearn")}
    assert api.calls == [("team/translearn", {}, False)]
    offline = {Path(r["run"]).name: r for r in read_runs(sweep["folder"])}
    assert online["2"]["run"] == f"team/translearn/{sweep['runs']['2'].id}"
    assert online["2"]["folder"] == offline["2"]["folder"] == str(sweep["folder"] / "2")  # paths.output_dir
    assert online["2"]["summary"] == offline["2"]["summary"] and online["2"]["config"] == offline["2"]["config"]
    assert compare(["--wandb", str(sweep["folder"]), "--json"]) == 0
    from_files = json.loads(capsys.readouterr().out)
    assert compare(["--wandb", "team/translearn", "--json"]) == 0
    from_project = json.loads(capsys.readouterr().out)
    assert from_project["rows"] == from_files["rows"]  # per-user values found through the run folder


# ---------------------------------------------------------------- the run-file reader on hand-written files


def _write(path: Path, records: list[pb.Record]) -> Path:
    """A run file as wandb writes it: header, then each record cut into chunks across 32 KiB blocks."""
    out = bytearray(HEADER.pack(IDENT, MAGIC, 0))
    for record in records:
        data = record.SerializeToString()
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < CHUNK.size:
                out += b"\0" * left
                continue
            piece, data = data[: left - CHUNK.size], data[left - CHUNK.size:]
            kind = (FULL if first else LAST) if not data else (FIRST if first else MIDDLE)
            out += CHUNK.pack(chunk_crc(kind, piece), len(piece), kind) + piece
            first = False
            if not data:
                break
    path.write_bytes(bytes(out))
    return path


def _records() -> list[pb.Record]:
    run = pb.Record(run=pb.RunRecord(run_id="abc", project="p", run_group="g", job_type="Joint", display_name="n",
                                     tags=["t"]))
    config = pb.Record(config=pb.ConfigRecord(update=[
        pb.ConfigItem(key="data", value_json=json.dumps({"name": "x" * 70000})),  # spans three blocks
        pb.ConfigItem(nested_key=["model", "dim"], value_json="64")]))
    rows = [pb.Record(history=pb.HistoryRecord(item=[pb.HistoryItem(key="epoch", value_json=str(e)),
                                                     pb.HistoryItem(key="val/x", value_json=str(e / 10))]))
            for e in range(2)]
    summary = pb.Record(summary=pb.SummaryRecord(update=[pb.SummaryItem(key="test/x", value_json="0.5"),
                                                         pb.SummaryItem(nested_key=["a", "b"], value_json="[1, 2]")]))
    return [run, config, *rows, summary, pb.Record(exit=pb.RunExitRecord(exit_code=0))]


def test_reader_parses_records_across_blocks(tmp_path):
    path = _write(tmp_path / "run-abc.wandb", _records())
    assert path.stat().st_size > 2 * BLOCK
    run = read_offline_run(path)
    assert (run.id, run.project, run.group, run.job_type, run.name, run.tags) == ("abc", "p", "g", "Joint", "n", ["t"])
    assert run.config == {"data": {"name": "x" * 70000}, "model": {"dim": 64}}
    assert run.history == [{"epoch": 0, "val/x": 0.0}, {"epoch": 1, "val/x": 0.1}]
    assert run.summary == {"test/x": 0.5, "a": {"b": [1, 2]}} and run.state == "finished"


def test_reader_keeps_what_a_killed_run_wrote(tmp_path):
    path = _write(tmp_path / "run-abc.wandb", _records()[:4])
    path.write_bytes(path.read_bytes()[:-5])  # killed in the middle of the last history row
    run = read_offline_run(path)
    assert run.config["model"] == {"dim": 64} and run.history == [{"epoch": 0, "val/x": 0.0}]
    assert run.state == "running" and run.exit_code is None


def test_reader_names_the_file_of_a_damaged_or_foreign_file(tmp_path):
    path = _write(tmp_path / "run-abc.wandb", _records())
    data = bytearray(path.read_bytes())
    data[HEADER.size + CHUNK.size + 2] ^= 0xFF  # a byte of the first record
    path.write_bytes(bytes(data))
    with pytest.raises(WandbFileError, match=rf"{path}: damaged record at byte {HEADER.size}"):
        read_offline_run(path)
    other = tmp_path / "run-x.wandb"
    other.write_bytes(b"PK\x03\x04 not a run file")
    with pytest.raises(WandbFileError, match="not a W&B run file"):
        read_offline_run(other)


# ---------------------------------------------------------------- the baseline rule


def _metrics(folder: Path, wandb: dict | None = None, **fields) -> Path:
    base = {"strategy": "TargetOnly", "data_manifest_key": "k1", "seed": 0, "repeats": "mask"}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(base | fields))
    if wandb is not None:
        (folder / RUN_FILE).write_text(json.dumps(wandb))
    return folder


def test_baseline_matches_data_seed_and_repeats_and_prefers_the_best_on_validation(tmp_path):
    _metrics(tmp_path / "0", **{"val/target/ndcg@10": 0.10, "test/target/ndcg@10": 0.20})
    _metrics(tmp_path / "1", **{"val/target/ndcg@10": 0.30, "test/target/ndcg@10": 0.25, "test/target/rmse": 2.0})
    _metrics(tmp_path / "2", seed=1, **{"val/target/ndcg@10": 0.90})  # another seed
    _metrics(tmp_path / "3", data_manifest_key="k2", **{"val/target/ndcg@10": 0.90})  # other data
    _metrics(tmp_path / "4", repeats="keep", **{"val/target/ndcg@10": 0.90})  # another ranking rule
    joint = {"strategy": "Joint", "data_manifest_key": "k1", "seed": 0, "repeats": "mask",
             "test/target/ndcg@10": 0.30, "test/target/rmse": 1.5, "best_epoch": 3}
    candidates = baseline_candidates(tmp_path / "5", tmp_path, "translearn", "any")  # a sweep: every job
    assert len(candidates) == 5
    folder, _ = find_baseline(joint, candidates, "val/target/ndcg@10")
    assert folder == tmp_path / "1"
    gain = baseline_gain(joint, candidates, "val/target/ndcg@10", tmp_path)
    assert gain == {"baseline_run": "1", "gain/test/target/ndcg@10": pytest.approx(0.30 / 0.25 - 1),
                    "gain/test/target/rmse": pytest.approx(0.25)}  # lower rmse is a gain: (2.0 - 1.5) / 2.0
    assert baseline_gain(joint | {"seed": 5}, candidates, "val/target/ndcg@10", tmp_path) == {}
    assert baseline_gain(joint | {"strategy": "TargetOnly"}, candidates, "val/target/ndcg@10", tmp_path) == {}


def test_a_single_run_finds_its_baseline_among_sibling_runs_of_its_group(tmp_path):
    runs = tmp_path / "outputs" / "runs"
    same = {"project": "translearn", "group": "synthetic"}
    _metrics(runs / "a", wandb=same, **{"test/target/ndcg@10": 0.20})
    _metrics(runs / "b", wandb=same | {"group": "other"}, **{"test/target/ndcg@10": 0.10})  # another group
    _metrics(runs / "c", wandb=same | {"project": "p2"}, **{"test/target/ndcg@10": 0.10})  # another project
    _metrics(runs / "d", **{"test/target/ndcg@10": 0.10})  # logged to no W&B run
    _metrics(runs / "e" / "deeper", wandb=same, **{"test/target/ndcg@10": 0.10})  # not a sibling
    me = runs / "z"
    candidates = baseline_candidates(me, None, "translearn", "synthetic")
    assert candidates == [runs / "a" / "metrics.json"]
    joint = {"strategy": "Joint", "data_manifest_key": "k1", "seed": 0, "repeats": "mask", "test/target/ndcg@10": 0.3}
    assert baseline_gain(joint, candidates, "val/target/ndcg@10", runs) == {
        "baseline_run": "a", "gain/test/target/ndcg@10": pytest.approx(0.5)}
    assert baseline_candidates(runs / "a", None, "translearn", "synthetic") == []  # never itself
