"""What researchers take away from a run: item and user vectors (``features``), top-k recommendations with
raw ids (``recommend``) and linear probes of what item vectors know about item attributes (``probe``).

Each works from a run folder through the generic ``Recommender`` API (``item_vectors``, ``user_vectors``,
``score_all``, ``needs_history``), so any model family a run can train is covered.
"""

from translearn.outputs.features import export_features, item_table, user_table
from translearn.outputs.probe import attribute_labels, fit_probe, probe_vectors
from translearn.outputs.recommend import Recommendations, recommend, user_indices
from translearn.outputs.run import LoadedRun, OutputError, load_run

__all__ = ["LoadedRun", "OutputError", "Recommendations", "attribute_labels", "export_features", "fit_probe",
           "item_table", "load_run", "probe_vectors", "recommend", "user_indices", "user_table"]
