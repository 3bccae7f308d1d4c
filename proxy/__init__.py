"""wheelwell: a private Python package index and caching pull-through mirror."""

__version__ = "0.1.0"
