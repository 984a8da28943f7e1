"""Readers that turn files on disk into ``CrossDomainData`` (see each module for its format)."""

from translearn.data.sources.amazon_arts_office import AmazonArtsOffice
from translearn.data.sources.base import DataSource
from translearn.data.sources.disencdr_pair import DisenCDRPair
from translearn.data.sources.movielens import MovieLens
from translearn.data.sources.synthetic import SyntheticSource
from translearn.data.sources.synthetic_images import SyntheticImages
from translearn.data.sources.tabular import TabularSource

__all__ = ["AmazonArtsOffice", "DataSource", "DisenCDRPair", "MovieLens", "SyntheticImages",
    "SyntheticSource", "TabularSource"]
