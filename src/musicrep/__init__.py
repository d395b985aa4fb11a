"""musicrep: audio representations learned against collaborative-filtering and genre
views with contrastive losses (Ferraro et al., IEEE SPL 2021).

    from musicrep import load_encoder
    enc = load_encoder("models/contrastive_MF_gnr")
    v = enc.embed(y, sr)   # (128,)
"""

from typing import Any

from .version import __version__

__all__ = ["Encoder", "load_encoder", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import musicrep` (and the CLIs' argument parsing) does not import torch.
    if name in ("Encoder", "load_encoder"):
        from .inference import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'musicrep' has no attribute {name!r}")
