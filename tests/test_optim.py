"""LazyAdam: Adam's update on dense gradients, and only the touched rows on sparse ones."""

from __future__ import annotations

import pytest
import torch

from translearn.cli.config import compose
from translearn.models.encoders import IdEmbedding
from translearn.optim import LazyAdam
from translearn.train import train


def test_dense_gradients_follow_torch_adam() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = LazyAdam([a], lr=0.01, weight_decay=0.1)
    ref = torch.optim.Adam([b], lr=0.01, weight_decay=0.1, foreach=False)
    for step in range(4):
        target = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        for p, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            ((p - target) ** 2).sum().backward()
            opt.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_sparse_gradients_update_only_their_rows() -> None:
    table = IdEmbedding(6, 2, init_std=1.0)
    table.sparse = True
    start = table.weight.detach().clone()
    opt = LazyAdam(table.parameters(), lr=0.1)
    table(torch.tensor([1, 1, 4])).sum().backward()  # rows 1 (twice) and 4
    assert table.weight.grad.is_sparse
    opt.step()
    # Adam's first step moves a row by lr * sign(grad) (m_hat / sqrt(v_hat) = +-1), here grad > 0
    moved = (start - table.weight.detach()).abs()
    assert torch.allclose(moved[[1, 4]], torch.full((2, 2), 0.1), atol=1e-6)
    assert torch.equal(moved[[0, 2, 3, 5]], torch.zeros(4, 2))
    opt.zero_grad()
    before = table.weight.detach().clone()
    table(torch.tensor([0])).sum().backward()
    opt.step()
    # lazy: rows 1 and 4 got no gradient this step and stay put (dense Adam would move them by momentum)
    after = table.weight.detach()
    assert torch.equal(after[[1, 4]], before[[1, 4]]) and not torch.equal(after[0], before[0])


def test_bad_hyperparameters_are_refused() -> None:
    with pytest.raises(ValueError, match="LazyAdam"):
        LazyAdam([torch.nn.Parameter(torch.zeros(1))], lr=0.0)


def test_a_run_with_lazy_adam_learns_like_adam(tmp_path) -> None:
    common = ["strategy=target_only", "trainer.max_epochs=6", "logger=none",
              "callbacks.early_stopping.patience=100"]
    lazy = train(compose([*common, "optimizer=lazy_adam", "optimizer.lr=0.01"], output_dir=tmp_path / "lazy"))
    dense = train(compose([*common, "optimizer.lr=0.01"], output_dir=tmp_path / "dense"))
    pop = train(compose([*common, "strategy=popularity"], output_dir=tmp_path / "pop"))
    key = "val/target/ndcg@10"
    assert lazy[key] > 0.8 * dense[key] and lazy[key] > pop[key], (lazy[key], dense[key], pop[key])


def test_ddp_reduces_the_sparse_gradients_of_id_tables(tmp_path) -> None:
    """DDP decides when it wraps the model which gradients are sparse (``nn.Embedding`` with ``sparse``); the
    strategy switches its id tables before that (``setup``), so a step under DDP (gloo, one process here) keeps
    the sparse gradient and LazyAdam updates only the rows looked up."""
    import functools

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from translearn.models import matrix_factorization
    from translearn.strategies import TargetOnly

    strategy = TargetOnly(matrix_factorization(5, {"t": 7}, embedding_dim=3), "t",
                          optimizer=functools.partial(LazyAdam, lr=0.1))
    strategy.setup("fit")  # what Lightning calls before its DDP strategy wraps the model
    tables = [m for m in strategy.modules() if isinstance(m, IdEmbedding)]
    assert len(tables) == 2 and all(isinstance(t, torch.nn.Embedding) and t.sparse for t in tables)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        class Scores(torch.nn.Module):  # DDP runs its reducer for calls through its own forward
            def __init__(self) -> None:
                super().__init__()
                self.model = strategy.model

            def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
                return self.model.score("t", users, items)

        wrapped = DistributedDataParallel(Scores())
        optimizer = LazyAdam(strategy.model.parameters(), lr=0.1)
        before = strategy.model.item_encoders["t"].weight.detach().clone()
        users, items = torch.tensor([0, 1]), torch.tensor([2, 4])
        wrapped(users, items).sum().backward()  # raised "Cannot access storage" before
        grad = strategy.model.item_encoders["t"].weight.grad
        assert grad is not None and grad.is_sparse
        optimizer.step()
        moved = (strategy.model.item_encoders["t"].weight != before).any(1)
        assert moved.tolist() == [False, False, True, False, True, False, False]
    finally:
        dist.destroy_process_group()
