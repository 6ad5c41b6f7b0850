"""irra: text-to-image person retrieval with IRRA."""

__version__ = "0.1.0"
