"""translearn.evaluation: loaders named by the data module (not counted), the evaluator's checks, the
strategy's delegation to it, and ``--device`` of the tools (no GPU here: cpu, and the one-line refusal)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from translearn.data import prepare
from translearn.data.datamodule import CrossDomainDataModule
from translearn.data.extra_protocol import sampled_view
from translearn.errors import ConfigError
from translearn.evaluation import EvalLoader, Evaluator, eval_loaders, resolve_device, trainer_device
from translearn.evaluation.device import default_device
from translearn.models import matrix_factorization
from translearn.strategies import Joint, TargetOnly

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")


def _joint(prepared, hand_facts, **kwargs) -> Joint:
    model = matrix_factorization(prepared.num_users, {d: prepared.num_items(d) for d in prepared.domains}, 2)
    return Joint(model, "t", ["s"], ks=(1,), metrics=("hr",), facts=hand_facts(prepared.num_users, 5), **kwargs)


def test_the_data_module_names_its_loaders_in_order(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["s"])
    dm = CrossDomainDataModule(prepared, ["t"], sampled=sampled_view(prepared, 1, seed=0), eval_domains=["s"])
    named = dm.eval_loaders
    assert [(x.name, x.domain, x.protocol) for x in named] == [
        ("target", "t", "full"), ("target/sampled", "t", "sampled"), ("s", "s", "full")]
    assert len(dm.val_dataloader()) == len(named) == len(dm.test_dataloader())
    assert [x.key("test", "ndcg@10") for x in named] == ["test/target/ndcg@10", "test/target/sampled/ndcg@10",
                                                         "test/s/ndcg@10"]
    primary_sampled = CrossDomainDataModule(sampled_view(prepared, 1, seed=0), ["t"])
    assert primary_sampled.eval_loaders == [EvalLoader("target", "t", "sampled")]


def test_loader_names_are_distinct_and_protocols_known():
    with pytest.raises(ValueError, match="distinct names"):
        eval_loaders("t", sources=["target"])
    with pytest.raises(ValueError, match="protocol must be one of full, sampled"):
        EvalLoader("target", "t", "ranked")


def test_the_evaluator_refuses_loaders_it_does_not_rank_and_mismatched_batches():
    evaluator = Evaluator("t", ks=(1,), metrics=("hr",), sources=["s"])
    with pytest.raises(ValueError, match="evaluation loader 'arts' .* is not one this strategy evaluates"):
        evaluator.begin("val", [EvalLoader("target", "t"), EvalLoader("arts", "arts")])
    strategy = TargetOnly(matrix_factorization(2, {"t": 3}, embedding_dim=1), "t", ks=(1,), metrics=("hr",))
    none = torch.tensor([], dtype=torch.long)
    full = {"users": torch.tensor([0]), "targets": torch.tensor([[1]]), "exclude_rows": none, "exclude_cols": none,
            "n_candidates": torch.tensor([3])}
    with pytest.raises(ValueError, match="'target/sampled' is sampled ranking, but its batch lacks sampled candidates"):
        strategy.evaluate_batch(full, "val", EvalLoader("target/sampled", "t", "sampled"))


def test_evaluation_state_stays_out_of_checkpoints(tiny_data, static_source, hand_facts):
    """Metric sums are not saved: checkpoints written before the evaluator moved out of the strategy load."""
    prepared = prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["s"])
    strategy = _joint(prepared, hand_facts, eval_domains=["s"])
    assert all(k.startswith("model.") for k in strategy.state_dict())
    assert len(list(strategy.evaluator.sets.children())) == 2 * 3  # (val, test) x (target, target/sampled, s)


def test_a_trainer_logs_each_named_loader_under_its_keys(tiny_data, static_source, hand_facts):
    prepared = prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["s"])
    strategy = _joint(prepared, hand_facts, eval_domains=["s"])
    dm = CrossDomainDataModule(prepared, strategy.train_domains, sampled=sampled_view(prepared, 1, seed=0),
                               eval_domains=["s"])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    got = {k for part in trainer.test(strategy, datamodule=dm, verbose=False) for k in part}
    assert got == {"test/target/hr@1", "test/target/sampled/hr@1", "test/s/hr@1"}
    users, values = strategy.per_user_test  # the primary target protocol's rows, one per user
    assert len(users) == len(values["hr@1"]) > 0
    # bare dataloaders carry no names: one is the target; several are refused instead of guessed
    assert set(trainer.validate(strategy, dataloaders=dm.val_dataloader()[0], verbose=False)[0]) == {"val/target/hr@1"}
    with pytest.raises(RuntimeError, match="must name them"):
        trainer.validate(strategy, dataloaders=dm.val_dataloader()[:2], verbose=False)


# ---------------------------------------------------------------------------------------------- --device
def test_devices_resolve_to_what_the_machine_has():
    assert resolve_device("cpu") == torch.device("cpu")
    assert trainer_device(torch.device("cpu")) == {"accelerator": "cpu", "devices": 1}
    assert trainer_device(torch.device("cuda", 1)) == {"accelerator": "gpu", "devices": [1]}
    with pytest.raises(ConfigError, match="--device: unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="unsupported device 'meta'"):
        resolve_device("meta")


@NO_GPU
def test_without_a_gpu_the_default_is_cpu_and_cuda_is_refused():
    assert default_device() == "cpu" and resolve_device(None) == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device is available"):
        resolve_device("cuda")


@NO_GPU
@pytest.mark.parametrize("prog, extra", [("translearn-eval", []), ("translearn-recommend", ["--users", "u1"]),
                                         ("translearn-features", ["--out", "f"]),
                                         ("translearn-probe", ["--attribute", "text", "--word", "0"])])
def test_every_tool_refuses_an_unavailable_device_in_one_line(prog, extra, run_cli, tmp_path):
    # the device is checked before the run is read: the folder does not even exist
    done = run_cli(prog, [str(tmp_path / "no-run"), *extra, "--device", "cuda"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"{prog}: error: --device cuda: no CUDA device is available on this machine "
                                   "(use --device cpu)")


def test_fusion_tunes_on_the_target_loader_and_reports_the_others_by_name(tiny_data, static_source, hand_facts):
    from translearn.strategies import Fusion

    prepared = prepare(static_source(tiny_data), "t", ["s"])
    sizes = {d: prepared.num_items(d) for d in prepared.domains}
    strategy = Fusion(matrix_factorization(prepared.num_users, sizes, 2), "t", ["s"],
                      source_model=matrix_factorization(prepared.num_users, sizes, 2), weights=[0.0, 1.0], ks=(1,),
                      metrics=("hr",), select_metric="hr@1")
    dm = CrossDomainDataModule(prepared, ["t"], sampled=sampled_view(prepared, 1, seed=0))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    got = {k for part in trainer.validate(strategy, datamodule=dm, verbose=False) for k in part}
    assert {"val/fusion/weight", "val/target/hr@1", "val/target/sampled/hr@1"} <= got
    assert not any(k.startswith("val/s/") for k in got)


def test_batches_move_as_one_call_and_shared_parts_stay_shared():
    from translearn.evaluation import move_batch

    part = {"users": torch.tensor([0, 1])}
    moved = move_batch({"a": part, "b": part, "c": {"users": torch.tensor([2])}}, torch.device("cpu"))
    assert moved["a"] is moved["b"] and moved["a"] is not moved["c"]
    assert torch.equal(move_batch({"users": torch.tensor([3])}, torch.device("cpu"))["users"], torch.tensor([3]))
    assert move_batch([torch.tensor([1])], torch.device("cpu")) is None  # left to Lightning's generic walk
