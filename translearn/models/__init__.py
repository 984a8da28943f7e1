"""Models: encoders, heads and the multi-domain ``Recommender`` (plain ``nn.Module``s, no Lightning)."""

from translearn.models.encoders import BiasedIdEmbedding, IdEmbedding
from translearn.models.factory import matrix_factorization, neural_cf
from translearn.models.heads import DotHead, MLPHead
from translearn.models.recommender import Recommender
from translearn.models.sequential import SequenceRecommender, gru4rec, sasrec

__all__ = ["BiasedIdEmbedding", "DotHead", "IdEmbedding", "MLPHead", "Recommender", "SequenceRecommender", "gru4rec",
           "matrix_factorization", "neural_cf", "sasrec"]
