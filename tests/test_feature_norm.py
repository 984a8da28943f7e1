"""model.content.feature_norm: frozen content features re-expressed per domain before the adaptor."""

from __future__ import annotations

import pytest
import torch

from translearn.errors import ConfigError
from translearn.models.content import ContentSpec, normalise_features


def _anisotropic(n: int = 500, width: int = 8) -> torch.Tensor:
    """Rows sharing one large mean direction, with correlated small differences (like sentence vectors)."""
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(width, width, generator=g)
    return 3.0 + torch.randn(n, width, generator=g) @ mixing * 0.1


def test_none_leaves_features_as_they_are():
    x = _anisotropic()
    assert normalise_features(x, "none") is x


def test_centre_removes_the_mean_only():
    x = _anisotropic()
    out = normalise_features(x, "centre")
    assert torch.allclose(out.mean(0), torch.zeros(x.shape[1]), atol=1e-5)
    assert torch.allclose(out, x - x.mean(0), atol=1e-5)


def test_standardise_gives_zero_mean_and_unit_std():
    x = _anisotropic()
    out = normalise_features(x, "standardise")
    assert torch.allclose(out.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(out.std(0), torch.ones(8), atol=1e-4)
    # dimensions stay correlated: standardising rescales, it does not rotate
    corr = torch.corrcoef(out.T)
    assert corr.abs().triu(1).max() > 0.2


def test_whiten_gives_identity_covariance():
    x = _anisotropic()
    out = normalise_features(x, "whiten")
    centred = out - out.mean(0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    assert torch.allclose(cov, torch.eye(8), atol=1e-3)
    assert out.dtype == torch.float32


def test_unknown_norm_names_the_config_key():
    with pytest.raises(ConfigError, match="model.content.feature_norm"):
        ContentSpec(item_tower="text", feature_norm="pca")
    with pytest.raises(ConfigError, match="model.content.feature_norm"):
        normalise_features(_anisotropic(), "pca")


@pytest.mark.parametrize("model", ["mf", "sasrec"])
def test_the_factories_standardise_each_domain_on_its_own_items(model):
    from tests.test_content_towers import build, catalog

    items = catalog(width=6)
    m = build(model, "text", items=items, feature_norm="standardise")
    for domain, n, start in (("t", 4, 0), ("s", 5, 4)):
        raw = torch.as_tensor(items.text_features(domain))
        expected = (raw - raw.mean(0)) / raw.std(0)
        if model == "mf":
            got = m.item_encoder(domain).features
        else:  # one token table, the domains in token order
            got = m.user_encoder.item_embedding.features[start:start + n]
        assert torch.allclose(got, expected, atol=1e-5)
