"""Plinth: a self-hosted ML platform for recommendation teams."""

__version__ = "0.1.0"
