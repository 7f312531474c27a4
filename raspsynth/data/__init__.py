"""The training-data pipeline: validated sampling, sharded datasets, stats."""

from raspsynth.data.generate import generate, split_of
from raspsynth.data.shards import DatasetError, iter_records, load_examples
from raspsynth.data.stats import dataset_stats

__all__ = ["DatasetError", "dataset_stats", "generate", "iter_records", "load_examples", "split_of"]
