"""The package version (a leaf: the dataset manifest records it)."""

__version__ = "0.1.0"
