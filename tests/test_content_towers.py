"""Content item towers (model.content.item_tower = text | id_text | image) for MF, NCF, SASRec and GRU4Rec: one shared
adaptor, frozen features, the id tower unchanged, cold items that only text can rank, and real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.cli.config import compose
from translearn.content.catalog import DomainItems, ItemCatalog
from translearn.content_keys import CONTENT_KEYS
from translearn.errors import ConfigError
from translearn.losses import BPRLoss
from translearn.models import gru4rec, matrix_factorization, neural_cf, sasrec
from translearn.models.content_towers import ContentItemTower, ContentTokenTable
from translearn.strategies.finetune import FineTune, copy_matching
from translearn.train import train

FACTORIES = {"mf": matrix_factorization, "ncf": neural_cf, "sasrec": sasrec, "gru4rec": gru4rec}
SMALL = {"mf": {}, "ncf": {}, "sasrec": dict(inner_size=16, max_history=5, dropout=0.0),
         "gru4rec": dict(max_history=5, dropout=0.0)}
QUERY = {"users": torch.tensor([0, 2]), "history": torch.tensor([[1, 6, 0], [7, 2, 3]]),
         "history_domain": torch.tensor([[0, 1, 0], [1, 0, 0]]), "history_len": torch.tensor([2, 3])}


def numbers(name: str, texts, batch_size: int) -> np.ndarray:
    """A stand-in text encoder: the numbers written in each text, as its vector."""
    return np.array([[float(w) for w in t.split()[1:]] for t in texts], dtype=np.float32)


def words(name: str, texts, batch_size: int) -> np.ndarray:
    """A cheap stand-in text encoder: a hashed bag of words (16 wide, never all zero)."""
    out = np.ones((len(texts), 16), dtype=np.float32)
    for r, t in enumerate(texts):
        for w in t.split():
            out[r, sum(map(ord, w)) % 16] += 1.0
    return out


def catalog(sizes=(("t", 4), ("s", 5)), encode=numbers, width: int = 6, seed: int = 0) -> ItemCatalog:
    """Domains whose item text spells a random vector of ``width`` numbers (read back by ``numbers``)."""
    rng = np.random.default_rng(seed)
    doms = {}
    for d, n in sizes:
        text = np.array(["v " + " ".join(f"{x:.4f}" for x in rng.normal(size=width)) for _ in range(n)], dtype=object)
        doms[d] = DomainItems(d, n, np.arange(n), text)
    return ItemCatalog(doms, None, encode)


TEXT = {"item_tower": "text"}  # a model.content node


def build(model: str, tower: str = "text", items=None, **kw):
    """``model`` over domains t (4 items) and s (5); keywords that are ``model.content`` keys go into its node."""
    content = {"item_tower": tower, **{k: kw.pop(k) for k in list(kw) if k in CONTENT_KEYS}}
    return FACTORIES[model](3, {"t": 4, "s": 5}, embedding_dim=8, items=catalog() if items is None else items,
                            content=content, **{**SMALL[model], **kw})


def query(m):
    return QUERY if m.needs_history else QUERY["users"]


# ---- every model x tower x adaptor: forward and backward -------------------------------------------------
@pytest.mark.parametrize("model", list(FACTORIES))
@pytest.mark.parametrize("tower,mix", [("text", "sum"), ("id_text", "sum"), ("id_text", "gate")])
@pytest.mark.parametrize("adaptor", ["linear", "whitening_moe"])
def test_forward_and_backward(model, tower, mix, adaptor):
    kw = {"history_scope": "all"} if model in ("sasrec", "gru4rec") else {}  # two views over one token table
    m = build(model, tower, adaptor=adaptor, id_text_mix=mix, adaptor_experts=3, **kw)
    scores = m.score_all("t", query(m))
    assert scores.shape == (2, 4) and torch.isfinite(scores).all()
    pos, neg = m.score_pos_neg("t", query(m), torch.tensor([0, 1]), torch.tensor([[2, 3], [3, 0]]))
    (scores.sum() + pos.sum() - neg.sum()).backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    adaptor_grads = [g for n, g in grads.items() if n.startswith("content_adaptor.")]
    assert adaptor_grads and all(g is not None and torch.isfinite(g).all() for g in adaptor_grads)
    assert any(g.abs().sum() > 0 for g in adaptor_grads)
    if mix == "gate":
        assert any(n.startswith("content_mix.") and g is not None for n, g in grads.items())


# ---- the id tower is the model of before --------------------------------------------------------------------
# score_all("t", QUERY) and sum |params| at torch.manual_seed(0), computed with the code before item towers
# existed (main at a235e16, /tmp/ref.py in the towers report).
BEFORE = {
    "mf": ([-0.000110285, -0.000491149, 0.00033334, -0.00028409, -0.000174254, -0.000399542, -8.81342e-05,
            -0.000545131], 0.7277763),
    "ncf": ([-0.0865683, -0.0863947, -0.0866456, -0.0861487, -0.0880076, -0.0877041, -0.0884197, -0.0877347],
            269.08982),
    "sasrec": ([-0.0728432, 0.0314627, -0.00339893, 0.0228358, -0.071585, -0.0695526, 0.080159, 0.0266456],
               57.788749),
    "gru4rec": ([-0.00647238, 0.0572709, -0.0530943, -0.01906, -0.0300411, 0.0862412, -0.0470108, -0.00621703],
                2910.3663),
}


@pytest.mark.parametrize("model", list(FACTORIES))
def test_the_id_tower_gives_the_numbers_of_before(model):
    torch.manual_seed(0)
    m = build(model, "id").eval()  # the catalog is passed but not read
    with torch.no_grad():
        scores = m.score_all("t", query(m)).flatten()
    expected, total = BEFORE[model]
    assert scores.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert sum(float(p.detach().double().abs().sum()) for p in m.parameters()) == pytest.approx(total, rel=1e-7)
    assert not any("content" in k for k in m.state_dict())


# ---- one adaptor for all domains -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(FACTORIES))
def test_the_adaptor_is_one_module_shared_by_every_domain(model):
    kw = {"history_scope": "all"} if model in ("sasrec", "gru4rec") else {}
    m = build(model, "id_text", id_text_mix="gate", **kw)
    state = m.state_dict()
    shared = [k for k in state if k.startswith(("content_adaptor.", "content_mix."))]
    assert [k for k in state if "adaptor" in k or "content_mix" in k] == shared  # no per-domain copy anywhere
    assert len(shared) == len(list(m.content_adaptor.parameters())) + len(list(m.content_mix.parameters()))
    assert not any("features" in k for k in state)  # frozen features are recomputed, never saved
    if model in ("mf", "ncf"):
        towers = [m.item_encoder(d) for d in ("t", "s")]
        assert all(isinstance(t, ContentItemTower) for t in towers)
        assert all(t._shared[0] is m.content_adaptor and t._shared[1] is m.content_mix for t in towers)
    else:
        table = m.user_encoder.own.item_embedding
        assert isinstance(table, ContentTokenTable) and table is m.user_encoder.mixed.item_embedding
        assert table._shared[0] is m.content_adaptor
        # the tied towers read the content table: item 2 of "s" (the second history domain) is token 4 + 2 + 1
        with torch.no_grad():
            assert torch.equal(m.item_vectors("s", torch.tensor([2])), table.weight[7:8])
            assert torch.equal(table.weight[0], torch.zeros(8))


def test_finetune_copies_the_adaptor_but_not_item_features_or_other_domains_ids():
    source = matrix_factorization(3, {"s": 5}, embedding_dim=8, items=catalog(), content={"item_tower": "id_text"})
    target = matrix_factorization(3, {"t": 4}, embedding_dim=8, items=catalog(), content={"item_tower": "id_text"})
    before = target.item_encoder("t").features.clone()
    copied = copy_matching(target, source)
    assert sorted(copied) == ["content_adaptor.linear.bias", "content_adaptor.linear.weight", "user_encoder.weight"]
    assert torch.equal(target.content_adaptor.linear.weight, source.content_adaptor.linear.weight)
    assert torch.equal(target.item_encoder("t").features, before)
    # a sequence model: the adaptor and the encoder blocks transfer, the token tables (other domains) do not
    s_seq = sasrec(0, {"s": 5}, embedding_dim=8, items=catalog(), content={"item_tower": "text"}, **SMALL["sasrec"])
    t_seq = sasrec(0, {"t": 4}, embedding_dim=8, items=catalog(), content={"item_tower": "text"}, **SMALL["sasrec"])
    moved = copy_matching(t_seq, s_seq)
    assert "content_adaptor.linear.weight" in moved and any(n.startswith("user_encoder.blocks.") for n in moved)


@pytest.mark.parametrize("model", ["mf", "sasrec"])
def test_finetune_freezing_everything_but_the_adaptor(model, hand_facts):
    """``strategy.freeze=[user_encoder]`` (MF: users; SASRec: the whole encoder and its token table) leaves
    the shared adaptor as the only trainable part, started from the source model's."""
    def make(domain: str, n: int):
        return FACTORIES[model](3, {domain: n}, embedding_dim=8, items=catalog(), content=TEXT,
                                **SMALL[model])

    source, target = make("s", 5), make("t", 4)
    strategy = FineTune(target, "t", ["s"], source_model=source, freeze=["user_encoder"], loss=BPRLoss(),
                        facts=hand_facts(3, 4))
    assert {"content_adaptor.linear.weight", "content_adaptor.linear.bias"} <= set(strategy.transferred)
    trainable = [n for n, p in target.named_parameters() if p.requires_grad]
    assert trainable == ["content_adaptor.linear.weight", "content_adaptor.linear.bias"]


def test_adaptor_only_fine_tuning_without_shared_users(hand_facts):
    """No target user has source data: freezing a sequence model's history encoder is accepted (it holds
    no per-user vectors), freezing MF's user vectors is refused (they would stay random)."""
    facts = hand_facts(3, 4)
    facts.shared_users["s"] = 0

    def make(model: str, domain: str, n: int):
        return FACTORIES[model](3, {domain: n}, embedding_dim=8, items=catalog(), content=TEXT,
                                **SMALL[model])

    seq = FineTune(make("sasrec", "t", 4), "t", ["s"], source_model=make("sasrec", "s", 5), freeze=["user_encoder"],
                   loss=BPRLoss(), facts=facts)
    assert [n for n, p in seq.model.named_parameters() if p.requires_grad] == ["content_adaptor.linear.weight",
                                                                                 "content_adaptor.linear.bias"]
    with pytest.raises(ValueError, match="shares 0 users"):
        FineTune(make("mf", "t", 4), "t", ["s"], source_model=make("mf", "s", 5), freeze=["user_encoder"],
                 loss=BPRLoss(), facts=facts)


def test_a_checkpoint_round_trips_without_the_features():
    m = build("mf", "id_text")
    fresh = build("mf", "id_text")
    fresh.load_state_dict(m.state_dict())  # strict: the saved keys are exactly the model's
    assert torch.equal(fresh.score_all("t", QUERY["users"]), m.score_all("t", QUERY["users"]))


# ---- frozen features, and the table computed once per step ----------------------------------------------------
@pytest.mark.parametrize("model", ["mf", "sasrec"])
def test_frozen_features_never_change_in_training(model):
    items = catalog()
    m = build(model, "text", items=items)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    start = m.content_adaptor.linear.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        loss = -torch.log_softmax(m.score_all("t", query(m)), dim=1)[:, 0].mean()
        loss.backward()
        opt.step()
        getattr(m, "release", lambda: None)()
    expected = items.text_features("t")
    feats = m.item_encoder("t").features if model == "mf" else m.user_encoder.item_embedding.features[:4]
    assert torch.equal(feats, expected) and not feats.requires_grad
    assert not torch.equal(m.content_adaptor.linear.weight, start)  # the adaptor did train


def test_a_sequence_step_computes_the_token_table_once():
    m = build("sasrec", "text")
    calls = []
    m.content_adaptor.register_forward_hook(lambda *a: calls.append(1))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for step in (1, 2):  # input lookups and output scores of one step share one table
        h = m.user_encoder.forward_all(QUERY["history"], QUERY["history_domain"], QUERY["history_len"])
        logits = h.reshape(-1, 8) @ m.item_vectors("t").T
        opt.zero_grad()
        logits.logsumexp(1).mean().backward()
        opt.step()
        assert len(calls) == step
    with torch.no_grad():  # evaluation: computed once for every batch while the weights stay the same
        for _ in range(3):
            m.score_all("t", QUERY)
    assert len(calls) == 3


# ---- only text can rank items never seen in training -----------------------------------------------------------
def _pair_accuracy(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of item pairs a model orders like ``truth`` ([U, I] each), over users."""
    ds, dt = scores.unsqueeze(2) - scores.unsqueeze(1), truth.unsqueeze(2) - truth.unsqueeze(1)
    mask = dt != 0
    return float(((ds * dt) > 0)[mask].float().mean())


def test_a_text_tower_ranks_cold_items_that_an_id_tower_cannot():
    """Users like items whose text vector points their way; 40 warm items are trained on, 20 cold ones never
    appear. An id MF can only guess the cold items (its vectors for them stay random); the text MF learned
    the adaptor on warm items, so it ranks the cold ones by their text."""
    width, warm, cold, users = 6, 40, 20, 120
    items = catalog((("t", warm + cold),), width=width, seed=1)
    vectors = torch.as_tensor(numbers("", list(items.domains["t"].text), 1))
    gen = torch.Generator().manual_seed(2)
    tastes = torch.randn(users, width, generator=gen)
    truth = tastes @ vectors.T  # [U, I]
    top = truth[:, :warm].topk(6, dim=1).indices  # each user's positives: the best 6 warm items
    results = {}
    for tower in ("id", "text"):
        torch.manual_seed(0)
        m = matrix_factorization(users, {"t": warm + cold}, embedding_dim=8, items=items, content={"item_tower": tower})
        opt, bpr = torch.optim.Adam(m.parameters(), lr=0.05), BPRLoss()
        for _ in range(300):
            u = torch.randint(0, users, (256,), generator=gen)
            pos = top[u, torch.randint(0, 6, (256,), generator=gen)]
            neg = torch.randint(0, warm, (256, 1), generator=gen)  # negatives are warm items too
            opt.zero_grad()
            bpr(*m.score_pos_neg("t", u, pos, neg)).backward()
            opt.step()
        with torch.no_grad():
            scores = m.score_all("t", torch.arange(users))
        results[tower] = (_pair_accuracy(scores[:, :warm], truth[:, :warm]),
                          _pair_accuracy(scores[:, warm:], truth[:, warm:]))
    (id_warm, id_cold), (text_warm, text_cold) = results["id"], results["text"]
    assert id_warm > 0.6 and text_warm > 0.6  # both learned the warm items
    assert 0.4 < id_cold < 0.6  # a coin toss on cold items
    assert text_cold > 0.75, results


# ---- bad input -------------------------------------------------------------------------------------------------
def test_no_item_text_is_one_line_naming_the_key_and_the_domain():
    bare = ItemCatalog({"t": DomainItems("t", 4, np.arange(4)), "s": DomainItems("s", 5, np.arange(5))}, None, words)
    for model in FACTORIES:
        with pytest.raises(ConfigError,
                           match=r"^model.content.item_tower=text: domain '(t|s)' has no item text") as err:
            build(model, "text", items=bare)
        assert "\n" not in str(err.value) and err.value.config_key == "model.content.item_tower"
    with pytest.raises(ConfigError, match="model.content.item_tower=image: domain 't' has no item images"):
        build("mf", "image", items=bare)
    with pytest.raises(ConfigError,
                       match="model.content.item_tower: expected one of id, text, id_text, image, got 'txt'"):
        build("mf", "txt")
    with pytest.raises(ConfigError, match="model.content.adaptor: expected one of linear, whitening_moe"):
        build("sasrec", "text", adaptor="moe")
    with pytest.raises(ConfigError, match="model.bias=true works with model.content.item_tower=id only"):
        build("mf", "text", bias=True)


# ---- real runs ---------------------------------------------------------------------------------------------------
TINY = ["data.dataset.num_users=160", "data.dataset.num_items=[50,40]", "data.batch_size=128",
        "data.eval_batch_size=64", "trainer.max_epochs=1"]
TINY_SEQ = ["model.max_history=10", "model.embedding_dim=16", "model.inner_size=32"]


def _run(tmp_path: Path, overrides: list[str]) -> dict:
    """Train; check what any run with a content tower must get right, whatever one epoch on tiny data reaches:
    the saved model holds the shared content adaptor (the tower was built and trained from item content), its
    test metrics are saved and finite, and they agree with one held-out item per user."""
    cfg = compose([*TINY, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}",
                   *overrides], output_dir=tmp_path / "run")
    summary = train(cfg)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == summary
    state = torch.load(tmp_path / "run" / summary["best_checkpoint"], map_location="cpu", weights_only=True)
    adaptor = [k for k in state["state_dict"] if ".content_adaptor." in k]
    assert adaptor and all(torch.isfinite(state["state_dict"][k]).all() for k in adaptor), list(state["state_dict"])
    t = {k.removeprefix("test/target/"): v for k, v in summary.items() if k.startswith("test/target/")}
    assert all(np.isfinite(v) for v in t.values()), t
    assert 0.0 < t["auc"] < 1.0 and 0.0 <= t["mrr@10"] <= t["ndcg@10"] <= t["hr@10"] <= t["hr@20"] < 1.0
    assert t["recall@10"] == pytest.approx(t["hr@10"]) and t["precision@10"] == pytest.approx(t["hr@10"] / 10)
    return summary


@pytest.mark.parametrize("overrides", [["model=mf", "model.content.item_tower=text"],
                                       ["model=sasrec", "model.content.item_tower=text", "strategy=target_only",
                                        *TINY_SEQ]],
                         ids=["mf", "sasrec"])
def test_train_runs_with_the_packaged_text_encoder(tmp_path, overrides):
    _run(tmp_path, overrides)
    assert list((tmp_path / "cache" / "features").iterdir())  # the MiniLM features went to the cache


def use_stub_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs read item text through the bag-of-words stand-in (no sentence-transformers model)."""
    import translearn.build as build_module

    monkeypatch.setattr(build_module, "build_catalog", lambda cfg, prepared: ItemCatalog.of(prepared, None, words))


@pytest.fixture
def stub_encoder(monkeypatch):
    use_stub_encoder(monkeypatch)


STRATEGIES = [
    ["strategy=joint", "model.content.item_tower=id_text", "model.content.id_text_mix=gate"],
    ["strategy=finetune", "strategy.stage.max_epochs=1", "strategy.freeze=[user_encoder]"],
    ["strategy=distill", "strategy.stage.max_epochs=1"],
    ["strategy=fusion", "strategy.stage.max_epochs=1"],
    ["strategy=feature_reuse", "strategy.stage.max_epochs=1"],
    ["strategy=mapping", "strategy.stage.max_epochs=1"],
    # one epoch: the joint schedule (the sequential one needs a target and a meta epoch; test_ptupcdr.py runs it)
    ["strategy=ptupcdr", "strategy.stage.max_epochs=1", "strategy.schedule=joint"],
    ["strategy=finetune", "strategy.stage.max_epochs=1", "model=sasrec", *TINY_SEQ,
     "model.content.adaptor=whitening_moe"],
]


@pytest.mark.parametrize("overrides", STRATEGIES, ids=lambda o: "-".join(x.split("=")[1] for x in o[:1] + o[-1:]))
def test_every_transfer_strategy_runs_with_a_text_tower(tmp_path, stub_encoder, overrides):
    summary = _run(tmp_path, ["model.content.item_tower=text", *overrides])
    assert summary["strategy"] == compose(overrides).strategy._target_.rsplit(".", 1)[-1]


def test_the_stage_cache_key_follows_the_frozen_features():
    from translearn.stage import frozen_inputs_digest

    assert frozen_inputs_digest(build("mf", "id")) is None  # id models: the stage keys of before
    same = frozen_inputs_digest(build("mf", "text")), frozen_inputs_digest(build("mf", "text"))
    other = frozen_inputs_digest(build("mf", "text", items=catalog(seed=5)))  # other texts, other features
    assert same[0] == same[1] != other


class ImageCatalog(ItemCatalog):
    """A catalog whose items have image paths and whose image features are a fixed random table."""

    def image_features(self, domain: str, backbone: str = "efficientnet_lite0", weights=None) -> torch.Tensor:
        assert backbone == "efficientnet_lite0"
        return torch.randn(self.num_items(domain), 12, generator=torch.Generator().manual_seed(len(domain)))


@pytest.mark.parametrize("model", list(FACTORIES))
def test_an_image_tower_reads_the_image_features(model):
    doms = {d: DomainItems(d, n, np.arange(n), image_paths=np.array([f"{d}{i}.jpg" for i in range(n)], dtype=object))
            for d, n in (("t", 4), ("s", 5))}
    items = ImageCatalog(doms, None, words)
    m = build(model, "image", items=items)
    assert m.content_adaptor.linear.in_features == 12
    m.score_all("t", query(m)).sum().backward()
    assert m.content_adaptor.linear.weight.grad is not None


def test_a_factory_without_items_is_called_as_before():
    from translearn.models.factory import call_factory

    seen = []

    def old(num_users, num_items):  # a user's factory of before: no items argument
        seen.append(("old", num_users))
        return matrix_factorization(num_users, num_items)

    def open_ended(num_users, num_items, **rest):
        seen.append(("open", sorted(rest)))
        return matrix_factorization(num_users, num_items)

    call_factory(old, catalog(), num_users=2, num_items={"t": 3})
    call_factory(open_ended, catalog(), num_users=2, num_items={"t": 3})
    assert seen == [("old", 2), ("open", [])]  # **rest may pass keywords on: items only by name
