"""musicrep: audio representations learned against collaborative-filtering and genre
views with contrastive losses (Ferraro et al., IEEE SPL 2021)."""

__version__ = "0.1.0"
