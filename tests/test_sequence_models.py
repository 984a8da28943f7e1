"""Sequence encoders: causality, padding invariance, last-position output, gradients, and learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from translearn.models.dual_view import DualViewEncoder, own_items
from translearn.models.sequence import GRU4RecEncoder, SASRecEncoder


def _dual() -> DualViewEncoder:
    """Two SASRec views with the gate opened (it starts at 0, which would hide the mixed view)."""
    enc = DualViewEncoder(*(SASRecEncoder(30, dim=16, max_len=12, num_heads=2, dropout=0.2, num_domains=2)
                            for _ in range(2)))
    with torch.no_grad():
        enc.gate.fill_(0.7)
    return enc


ENCODERS = {
    "sasrec": lambda: SASRecEncoder(30, dim=16, max_len=12, num_layers=2, num_heads=2, dropout=0.2, num_domains=2),
    "gru": lambda: GRU4RecEncoder(30, dim=16, hidden=24, dropout=0.2, num_domains=2),
    "lstm": lambda: GRU4RecEncoder(30, dim=16, hidden=24, num_layers=2, dropout=0.2, cell="lstm"),
    "dual": _dual,
}


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three right-padded histories of lengths 5, 2 and 8 over tokens 1..29, two domains."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 2, 8])
    history = torch.randint(1, 30, (3, 8), generator=g)
    domain = torch.randint(0, 2, (3, 8), generator=g)
    pad = torch.arange(8) >= lengths[:, None]
    return history.masked_fill(pad, 0), domain.masked_fill(pad, 0), lengths


@pytest.fixture(params=list(ENCODERS))
def encoder(request):
    torch.manual_seed(0)
    return ENCODERS[request.param]().eval()


def test_causal_a_later_item_does_not_change_earlier_positions(encoder) -> None:
    history, domain, lengths = _batch()
    out = encoder.forward_all(history, domain, lengths)
    changed = history.clone()
    changed[2, 4] = 1 + (history[2, 4] % 29)  # a different token at position 4 of the length-8 row
    out2 = encoder.forward_all(changed, domain, lengths)
    assert torch.allclose(out[2, :4], out2[2, :4], atol=1e-6)
    assert not torch.allclose(out[2, 4:], out2[2, 4:], atol=1e-4)  # and it does change position 4 onwards
    assert torch.allclose(out[:2], out2[:2], atol=1e-6)


def test_padding_length_and_batch_composition_do_not_matter(encoder) -> None:
    history, domain, lengths = _batch()
    last = encoder(history, domain, lengths)
    wider = encoder(F.pad(history, (0, 4)), F.pad(domain, (0, 4)), lengths)  # 4 more padding columns
    assert torch.allclose(last, wider, atol=1e-5)
    trimmed = encoder(history[1:2, :2], domain[1:2, :2], lengths[1:2])  # row 1 alone, trimmed to its length
    assert torch.allclose(last[1], trimmed[0], atol=1e-5)
    # padding tokens carrying garbage (any token, any domain) change nothing either
    junk = history.clone()
    junk[0, 5:] = 7
    assert torch.allclose(last, encoder(junk, domain, lengths), atol=1e-6)


def test_forward_is_forward_all_at_the_last_item(encoder) -> None:
    history, domain, lengths = _batch()
    out = encoder.forward_all(history, domain, lengths)
    last = encoder(history, domain, lengths)
    assert last.shape == (3, 16) and out.shape == (3, 8, 16)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(last[b], out[b, n - 1])
    empty = encoder(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2).long())
    assert torch.isfinite(empty).all() and torch.equal(empty[0], empty[1])  # one "no history" vector


def test_gradients_reach_every_parameter(encoder) -> None:
    encoder.train()
    history, domain, lengths = _batch()
    out = encoder.forward_all(history, domain, lengths)
    logits = out @ encoder.item_embedding.weight[1:].T  # tied output table over the 29 items
    F.cross_entropy(logits.reshape(-1, 29), torch.randint(0, 29, (24,))).backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert encoder.item_embedding.weight.grad[0].abs().sum() == 0  # the padding row is never trained


def test_domain_embedding_changes_the_output() -> None:
    torch.manual_seed(0)
    enc = SASRecEncoder(30, dim=16, max_len=12, num_domains=2).eval()
    history, domain, lengths = _batch()
    assert not torch.allclose(enc(history, domain, lengths), enc(history, 1 - domain, lengths))
    single = SASRecEncoder(30, dim=16, max_len=12).eval()
    assert single.domain_embedding is None
    assert torch.equal(single(history, domain, lengths), single(history, 1 - domain, lengths))


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        SASRecEncoder(30, dim=10, num_heads=3)
    with pytest.raises(ValueError, match="cell"):
        GRU4RecEncoder(30, cell="rnn")
    enc = SASRecEncoder(30, dim=8, max_len=4)
    with pytest.raises(ValueError, match="max_history=4"):
        enc(torch.ones(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]))


@pytest.mark.parametrize("name", ["sasrec", "gru"])
def test_learns_a_deterministic_next_item_pattern(name: str) -> None:
    """Items 0..n-1 follow i -> i + 1 mod n; after a short training the next item is predicted almost always."""
    torch.manual_seed(0)
    n, length = 20, 10
    if name == "sasrec":
        enc = SASRecEncoder(n + 1, dim=32, max_len=length, num_layers=1, num_heads=2, dropout=0.1)
    else:
        enc = GRU4RecEncoder(n + 1, dim=32, hidden=32, dropout=0.1)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)

    def sample(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, n, (batch, 1))
        items = (start + torch.arange(length + 1)) % n  # [B, length + 1]
        return items[:, :-1] + 1, items[:, 1:]  # tokens, next-item labels

    for _ in range(150):
        tokens, labels = sample(64)
        out = enc.forward_all(tokens, torch.zeros_like(tokens), torch.full((64,), length))
        loss = F.cross_entropy((out @ enc.item_embedding.weight[1:].T).reshape(-1, n), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    tokens, labels = sample(200)
    lengths = torch.randint(1, length + 1, (200,))
    tokens = tokens.masked_fill(torch.arange(length) >= lengths[:, None], 0)
    with torch.no_grad():
        pred = (enc(tokens, torch.zeros_like(tokens), lengths) @ enc.item_embedding.weight[1:].T).argmax(1)
    accuracy = (pred == labels[torch.arange(200), lengths - 1]).float().mean()
    assert accuracy > 0.95  # chance is 1/20


def test_own_items_keeps_the_domain_items_in_order_and_maps_positions() -> None:
    history = torch.tensor([[5, 9, 6, 7, 0], [8, 3, 0, 0, 0]])
    domain = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    own, own_len, index = own_items(history, domain, torch.tensor([4, 2]), domain=0)
    assert own.tolist() == [[9, 7], [8, 3]] and own_len.tolist() == [2, 2]
    assert index[0, :4].tolist() == [-1, 0, 0, 1] and index[1, :2].tolist() == [0, 1]
    own1, len1, index1 = own_items(history, domain, torch.tensor([4, 2]), domain=1)
    assert own1.tolist() == [[5, 6], [0, 0]] and len1.tolist() == [2, 0]
    assert index1[0, :4].tolist() == [0, 0, 1, 1] and index1[1, :2].tolist() == [-1, -1]


def test_dual_view_with_a_closed_gate_is_the_own_domain_model() -> None:
    """Gate 0 (its initial value): each position sees exactly what a single-domain model reading only the
    predicted domain's items would see; the other domain's items change nothing."""
    torch.manual_seed(0)
    enc = DualViewEncoder(*(SASRecEncoder(30, dim=16, max_len=12, num_heads=2, num_domains=2)
                            for _ in range(2))).eval()
    history = torch.tensor([[5, 9, 6, 7]])
    domain = torch.tensor([[1, 0, 1, 0]])
    out = enc.forward_all(history, domain, torch.tensor([4]), domain=0)
    alone = enc.own.forward_all(torch.tensor([[9, 7]]), torch.tensor([[0, 0]]), torch.tensor([2]))
    assert torch.allclose(out[0, 1], alone[0, 0], atol=1e-6) and torch.allclose(out[0, 3], alone[0, 1], atol=1e-6)
    assert torch.equal(out[0, 0], torch.zeros(16))  # no own item yet
    other = history.clone()
    other[0, 2] = 11  # another item of domain 1
    assert torch.allclose(enc.forward_all(other, domain, torch.tensor([4]), domain=0), out, atol=1e-6)
    with torch.no_grad():
        enc.gate.fill_(1.0)
    assert not torch.allclose(enc.forward_all(other, domain, torch.tensor([4]), domain=0), out, atol=1e-4)
