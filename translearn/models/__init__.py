"""Models: encoders, heads and the multi-domain ``Recommender`` (plain ``nn.Module``s, no Lightning)."""

from translearn.models.encoders import BiasedIdEmbedding, IdEmbedding
from translearn.models.factory import matrix_factorization, neural_cf
from translearn.models.heads import DotHead, MLPHead
from translearn.models.recommender import Recommender

__all__ = ["BiasedIdEmbedding", "DotHead", "IdEmbedding", "MLPHead", "Recommender", "matrix_factorization", "neural_cf"]
