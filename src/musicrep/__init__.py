"""musicrep: audio representations learned against collaborative-filtering and genre
views with contrastive losses (Ferraro et al., IEEE SPL 2021).

    from musicrep import load_encoder
    enc = load_encoder("models/contrastive_MF_gnr")
    v = enc.embed(y, sr)   # (128,)
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Encoder", "load_encoder"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import musicrep` (and the CLIs' argument parsing) does not import torch.
    if name in __all__:
        from .inference import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'musicrep' has no attribute {name!r}")
