"""Every model factory: shapes, consistency of score / score_pos_neg / score_all, and gradients."""

from __future__ import annotations

import pytest
import torch

from translearn.models import DotHead, IdEmbedding, MLPHead, Recommender, matrix_factorization, neural_cf

FACTORIES = {
    "mf": lambda: matrix_factorization(7, {"s": 5, "t": 4}, embedding_dim=8, init_std=0.5),
    "mf-bias": lambda: matrix_factorization(7, {"s": 5, "t": 4}, embedding_dim=8, init_std=0.5, bias=True),
    "ncf": lambda: neural_cf(7, {"s": 5, "t": 4}, embedding_dim=8, hidden_dims=(6, 3), init_std=0.5),
    "ncf-no-gmf": lambda: neural_cf(7, {"s": 5, "t": 4}, embedding_dim=8, gmf=False, init_std=0.5),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_scores_agree_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = FACTORIES[name]()
    users = torch.tensor([0, 3, 6])
    pos, neg = torch.tensor([1, 0, 3]), torch.tensor([[2, 3], [1, 1], [0, 2]])
    s_pos, s_neg = model.score_pos_neg("t", users, pos, neg)
    assert s_pos.shape == (3,) and s_neg.shape == (3, 2)
    full = model.score_all("t", users)
    assert full.shape == (3, 4)
    torch.testing.assert_close(s_pos, full[torch.arange(3), pos])
    torch.testing.assert_close(s_neg, full.gather(1, neg))
    torch.testing.assert_close(model.score("t", users, pos), s_pos)
    scratch = torch.full((100,), 9.0)
    torch.testing.assert_close(model.score_all("t", users, out=scratch), full)
    # both domains' towers train when both are used
    loss = s_pos.sum() - s_neg.sum() + model.score_all("s", users).sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_dot_head_is_the_inner_product():
    u = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    items = torch.tensor([[3.0, 4.0], [1.0, 0.0], [2.0, 2.0]])
    # hand: user 0 -> 11, 1, 6; user 1 -> -4, 0, -2
    assert DotHead().score_all(u, items).tolist() == [[11.0, 1.0, 6.0], [-4.0, 0.0, -2.0]]
    assert DotHead().score(u, items[:2]).tolist() == [11.0, 0.0]


def test_mlp_head_chunked_full_ranking_matches_pairwise_scores():
    torch.manual_seed(1)
    head = MLPHead(4, (5,), gmf=True, chunk_cells=3)  # forces many item chunks
    u, items = torch.randn(2, 4), torch.randn(7, 4)
    expected = torch.stack([head.score(u, items[i].expand(2, 4)) for i in range(7)], dim=1)
    torch.testing.assert_close(head.score_all(u, items), expected)


def test_unknown_domain_names_the_towers():
    model = Recommender(IdEmbedding(3, 2), {"books": IdEmbedding(2, 2)}, DotHead())
    with pytest.raises(KeyError, match="books"):
        model.score_all("movies", torch.tensor([0]))


def test_embedding_rejects_empty_tables():
    with pytest.raises(ValueError, match="num >= 1"):
        IdEmbedding(0, 4)


def test_biased_mf_adds_user_and_item_biases():
    model = matrix_factorization(2, {"t": 3}, embedding_dim=1, bias=True)
    with torch.no_grad():
        model.user_encoder.embedding.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.user_encoder.bias.copy_(torch.tensor([0.5, -1.0]))
        model.item_encoders["t"].embedding.weight.copy_(torch.tensor([[1.0], [0.0], [-1.0]]))
        model.item_encoders["t"].bias.copy_(torch.tensor([3.0, 2.0, 1.0]))
    # user 0: 1*[1, 0, -1] + 0.5 + [3, 2, 1]; user 1: 2*[1, 0, -1] - 1 + [3, 2, 1]
    assert model.score_all("t", torch.tensor([0, 1])).tolist() == [[4.5, 2.5, 0.5], [4.0, 1.0, -2.0]]
