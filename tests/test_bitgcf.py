"""BiTGCF: a forward pass by hand, propagation against a dense reference, encode once for the pair of
domains, the L2 term, the strategies that take it or refuse it in one line, a run through translearn-train,
and the real Arts -> Office graphs without a held-out edge."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from translearn.data.splits import TRAIN
from translearn.errors import ConfigError
from translearn.losses import BPRLoss
from translearn.models.bitgcf import BiTGCF, bitgcf
from translearn.models.context import ModelContext
from translearn.models.factory import declared_reads, matrix_factorization
from translearn.models.lightgcn import lightgcn
from translearn.strategies import FineTune, Joint, TargetOnly

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
R2 = math.sqrt(2)


def _tiny() -> BiTGCF:
    """2 users; the target "t" has one item both users bought, the source "s" one item only user 0 bought, so
    user 0 is shared (one interaction in each domain) and user 1 is the target's alone. 2-d embeddings."""
    graphs = {"t": torch.tensor([[1.0], [1.0]]).to_sparse(), "s": torch.tensor([[1.0], [0.0]]).to_sparse()}
    model = BiTGCF(2, graphs, embedding_dim=2, num_layers=1, lam=0.8, dropout=0.0, connect="concat")
    with torch.no_grad():
        model.user_encoder["t"].weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0]]))
        model.item_encoder("t").weight.copy_(torch.tensor([[3.0, 1.0]]))
        model.user_encoder["s"].weight.copy_(torch.tensor([[4.0, 1.0], [5.0, 0.0]]))
        model.item_encoder("s").weight.copy_(torch.tensor([[6.0, -1.0]]))
    return model


def test_forward_pass_by_hand():
    """Propagation h = x + Âx + x * Âx per coordinate, then the transfer of user 0 (n_s = n_t = 1, so the
    interaction-count mix is the plain mean), then concat [ego, unit-norm layer 1]."""
    model = _tiny()
    # target: degrees u0 1, u1 1, i0 2, every edge 1/sqrt(2); source: u0-i0 with weight 1, u1 has no edge
    ht_u0 = [1 + 3 / R2 + 1 * 3 / R2, 0 + 1 / R2 + 0]             # x + (Âx) + x * (Âx), Âx_u = i / sqrt(2)
    ht_u1 = [2 + 3 / R2 + 2 * 3 / R2, 1 + 1 / R2 + 1 / R2]
    ht_i = [3 + 3 / R2 + 3 * 3 / R2, 1 + 1 / R2 + 1 * 1 / R2]    # Âx_i = (u0 + u1) / sqrt(2) = (3, 1) / sqrt(2)
    hs_u0 = [4 + 6 + 4 * 6, 1 - 1 + 1 * -1]                        # Âx_u0 = the source item (6, -1)
    hs_u1 = [5.0, 0.0]                                              # no source edge: unchanged
    hs_i = [6 + 4 + 6 * 4, -1 + 1 + -1 * 1]                        # Âx_i = user 0 (4, 1)
    common = [(a + b) / 2 for a, b in zip(hs_u0, ht_u0, strict=True)]
    et_u0 = [(0.8 * t + 0.2 * s + c) / 2 for t, s, c in zip(ht_u0, hs_u0, common, strict=True)]
    es_u0 = [(0.8 * s + 0.2 * t + c) / 2 for t, s, c in zip(ht_u0, hs_u0, common, strict=True)]

    def unit(v):
        n = math.hypot(*v)
        return [x / n for x in v]

    users_t, items_t = model.encode("t")
    users_s, items_s = model.encode("s")
    assert users_t.shape == (2, 4) and items_s.shape == (1, 4)
    expect = {"t users": [[1, 0, *unit(et_u0)], [2, 1, *unit(ht_u1)]], "t items": [[3, 1, *unit(ht_i)]],
              "s users": [[4, 1, *unit(es_u0)], [5, 0, *unit(hs_u1)]], "s items": [[6, -1, *unit(hs_i)]]}
    got = {"t users": users_t, "t items": items_t, "s users": users_s, "s items": items_s}
    for name, value in expect.items():
        assert torch.allclose(got[name], torch.tensor(value), atol=1e-6), name
    score = model.score("t", torch.tensor([0]), torch.tensor([0])).item()
    assert score == pytest.approx(3 + 0 + sum(a * b for a, b in zip(unit(et_u0), unit(ht_i), strict=True)), rel=1e-6)
    assert model.query_vectors("s", torch.tensor([1]))[0].tolist() == pytest.approx([5, 0, 1, 0])


def _dense_reference(r_t: torch.Tensor, r_s: torch.Tensor, ego: dict, layers: int, lam: float,
                     connect: str) -> dict:
    """The model's equations with dense matrices: {domain: [U + I, D']}."""
    u = r_t.shape[0]

    def norm_adj(r):
        a = torch.zeros(u + r.shape[1], u + r.shape[1])
        a[:u, u:], a[u:, :u] = r, r.T
        deg = a.sum(1)
        inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros(()))
        return inv[:, None] * a * inv[None, :]

    adj = {"t": norm_adj(r_t), "s": norm_adj(r_s)}
    n_t, n_s = r_t.sum(1), r_s.sum(1)
    x = dict(ego)
    outs = {d: [ego[d]] for d in ("t", "s")}
    for _ in range(layers):
        h = {d: x[d] + adj[d] @ x[d] + x[d] * (adj[d] @ x[d]) for d in ("t", "s")}
        new_t, new_s = h["t"].clone(), h["s"].clone()
        for user in range(u):
            if n_t[user] > 0 and n_s[user] > 0:
                a_t, a_s = h["t"][user], h["s"][user]
                common = (n_s[user] * a_s + n_t[user] * a_t) / (n_s[user] + n_t[user])
                new_t[user] = (lam * a_t + (1 - lam) * a_s + common) / 2
                new_s[user] = (lam * a_s + (1 - lam) * a_t + common) / 2
        x = {"t": new_t, "s": new_s}
        for d in ("t", "s"):
            outs[d].append(F.normalize(x[d], dim=1))
    return {d: torch.cat(o, 1) if connect == "concat" else torch.stack(o).mean(0) for d, o in outs.items()}


@pytest.mark.parametrize("connect", ["concat", "mean"])
def test_propagation_equals_a_dense_reference(connect):
    gen = torch.Generator().manual_seed(0)
    r_t = (torch.rand(8, 5, generator=gen) < 0.4).float()
    r_s = (torch.rand(8, 6, generator=gen) < 0.4).float()
    r_t[7], r_s[6] = 0, 0  # user 7: the source's alone, user 6: the target's alone
    r_t[0], r_s[0] = 1, 1  # user 0 shared, with different counts in the two domains (5 and 6)
    model = BiTGCF(8, {"t": r_t.to_sparse(), "s": r_s.to_sparse()}, embedding_dim=4, num_layers=3, lam=0.7,
                   connect=connect).eval()  # eval: no dropout
    ego = {d: torch.cat([model.user_encoder[d].weight, model.item_encoder(d).weight]).detach() for d in ("t", "s")}
    ref = _dense_reference(r_t, r_s, ego, 3, 0.7, connect)
    for d in ("t", "s"):
        users, items = model.encode(d)
        assert torch.allclose(torch.cat([users, items]), ref[d], atol=1e-5), d
    shared = ((r_t.sum(1) > 0) & (r_s.sum(1) > 0)).nonzero().squeeze(1)
    assert model.shared_users.tolist() == shared.tolist() and 6 not in shared and 7 not in shared


def _counting(model):
    calls = []
    real = model.propagate

    def propagate():
        calls.append("both")
        return real()

    model.propagate = propagate
    return calls


def test_encode_once_per_training_step_and_per_evaluation_pass():
    gen = torch.Generator().manual_seed(1)
    r = (torch.rand(6, 5, generator=gen) < 0.5).float()
    model = BiTGCF(6, {"t": r.to_sparse(), "s": r[:, :3].to_sparse()}, embedding_dim=4, num_layers=2)
    calls = _counting(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([[1], [2], [0]])
    part = {"users": users, "items": pos, "negatives": neg}
    loss = 0
    for domain in ("t", "s"):  # a joint step: both domains' losses read one coupled propagation
        p, n = model.score_pos_neg(domain, part, pos, neg)
        loss = loss + BPRLoss()(p, n) + model.regularization(domain, part)
    assert calls == ["both"]
    loss.backward()
    assert all(model.user_encoder[d].weight.grad is not None for d in ("t", "s"))
    opt.step()
    calls.clear()
    model.eval()
    with torch.no_grad():  # an evaluation pass: every batch reads one propagation
        first = model.score_all("t", torch.tensor([0, 1]))
        for batch in (torch.tensor([2, 3]), torch.tensor([4, 5])):
            model.score_all("t", batch)
            model.score("t", batch, torch.tensor([[0, 1], [2, 3]]))
    assert calls == ["both"]
    model.train()
    opt.zero_grad()
    model.score_pos_neg("t", part, pos, neg)[0].sum().backward()
    opt.step()  # the step invalidates the tables
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model.score_all("t", torch.tensor([0, 1])), first)
    assert calls == ["both", "both", "both"]


def test_regularization_is_the_l2_on_the_domains_ego_embeddings():
    graph = torch.eye(3).to_sparse()
    model = BiTGCF(3, {"t": graph, "s": graph}, embedding_dim=2, reg_weight=0.5)
    part = {"users": torch.tensor([0, 2]), "items": torch.tensor([1, 1]), "negatives": torch.tensor([[0], [2]])}
    u, v = model.user_encoder["s"].weight.detach(), model.item_encoder("s").weight.detach()
    expected = 0.5 / 2 * (u[[0, 2]].pow(2).sum() + v[[1, 1]].pow(2).sum() + v[[0, 2]].pow(2).sum()) / 2
    assert model.regularization("s", part).item() == pytest.approx(expected.item())
    assert BiTGCF(3, {"t": graph, "s": graph}, reg_weight=0.0).regularization("s", part) is None


def test_factory_and_model_refuse_bad_settings_in_one_line():
    ctx = ModelContext(3, {"t": 2, "s": 2, "x": 2}, train_rows={d: ([0, 1], [1, 0]) for d in ("t", "s", "x")})
    with pytest.raises(ConfigError, match="training graph"):
        bitgcf(num_users=3, num_items={"t": 2, "s": 2})
    with pytest.raises(ConfigError, match="the target and one source domain; .* 3 domain"):
        bitgcf(num_users=3, num_items={"t": 2, "s": 2, "x": 2}, context=ctx)
    with pytest.raises(ConfigError, match="1 domain"):
        bitgcf(num_users=3, num_items={"t": 2}, context=ctx)
    model = bitgcf(num_users=3, num_items={"t": 2, "s": 2}, context=ctx)
    assert model.domains == ["t", "s"] and model.encode("t")[0].shape == (3, 64 * 3)
    graph = torch.ones(3, 2).to_sparse()
    for key, value in (("lam", 1.5), ("dropout", 1.0), ("num_layers", -1), ("connect", "sum")):
        with pytest.raises(ValueError, match=f"model.{key}"):
            BiTGCF(3, {"t": graph, "s": graph}, **{key: value})


def test_strategies_take_it_or_refuse_in_one_line(hand_facts):
    graph = torch.ones(4, 3).to_sparse()
    model = BiTGCF(4, {"t": graph, "s": graph})
    assert model.reads == {"graph", "sources"}
    assert Joint.refuses_model(model) is None
    for cls, words in ((TargetOnly, "target domain alone"), (FineTune, "source-stage model")):
        why = cls.refuses_model(model)
        assert words in why and "strategy=joint" in why and "\n" not in why
    with pytest.raises(ConfigError, match="target domain alone"):
        TargetOnly(model, "t", facts=hand_facts(4, 3))
    Joint(model, "t", ["s"], facts=hand_facts(4, 3))


def test_the_factory_declares_what_its_model_reads_before_it_is_built():
    assert declared_reads(bitgcf) == {"graph", "sources"}
    assert declared_reads(BiTGCF) == {"graph", "sources"}
    assert declared_reads(lightgcn) == {"graph"}
    assert declared_reads(matrix_factorization) == frozenset()
    assert declared_reads(lambda num_users, num_items: None) == frozenset()


def test_train_cli_runs_bitgcf_with_the_default_strategy(run_cli, run_overrides, tmp_path):
    """``model=bitgcf`` alone takes the run's default strategy (joint), which trains it."""
    done = run_cli("translearn-train", ["model=bitgcf", "trainer.max_epochs=1", *run_overrides, "logger=csv",
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Joint on synthetic" in done.stdout and "ndcg@10" in done.stdout


@pytest.mark.parametrize("strategy,words", [("target_only", "TargetOnly trains on the target domain alone"),
                                            ("finetune", "source-stage model")])
def test_train_cli_refuses_bitgcf_before_training(strategy, words, run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", ["model=bitgcf", f"strategy={strategy}", *run_overrides,
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0] and "strategy=joint" in errors[0]
    assert "epoch" not in done.stderr


def _held_out_pairs_not_trained(prepared, domain) -> np.ndarray:
    inter = prepared.data.domain(domain).interactions
    n = prepared.num_items(domain)
    train = prepared.role_of(domain) == TRAIN
    train_keys = np.unique(inter.users[train] * n + inter.items[train])
    held_keys = inter.users[~train] * n + inter.items[~train]
    return held_keys[~np.isin(held_keys, train_keys)]


@pytest.mark.skipif(not (DATA_ROOT / "amazon-arts-office").is_dir(), reason="real data amazon-arts-office absent")
def test_real_arts_office_model_has_no_held_out_edge(tmp_path):
    """The model ``translearn-train data=arts_office model=bitgcf`` builds: no held-out Office (user, item) pair
    is an edge of the Office adjacency it propagates over, and every user is shared by the two domains."""
    from translearn.build import build_model, build_run_data
    from translearn.cli.config import compose

    cfg = compose(["data=arts_office", "model=bitgcf", f"paths.data_root={DATA_ROOT}",
                   f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path)
    prepared = build_run_data(cfg)
    model = build_model(cfg, prepared)
    assert model.domains == ["office", "arts"]
    u, n = prepared.num_users, prepared.num_items("office")
    rows, cols = model.graphs["office"].adjacency.coalesce().indices().numpy()
    user_item = (rows < u) & (cols >= u)
    edges = rows[user_item] * n + (cols[user_item] - u)
    held = _held_out_pairs_not_trained(prepared, "office")
    assert len(held) > 1000 and not np.isin(held, edges).any()
    train = prepared.train("office")
    assert len(edges) == len(np.unique(train.users * n + train.items))
    assert len(model.shared_users) == len(np.intersect1d(train.users, prepared.train("arts").users)) > 9000
