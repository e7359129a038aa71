"""Data sets: the synthetic 1D lab data (and, with the image recipes, MNIST and friends).

Every loader returns tensors; nothing here touches MLflow.
"""
from pipeline.data.bundle import DataBundle, Split, load_bundle

__all__ = ["DataBundle", "Split", "load_bundle"]
