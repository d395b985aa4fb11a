"""The HEAR API (Holistic Evaluation of Audio Representations, hearbenchmark.com), so
its evaluation kit and tools that follow the same convention can load our encoders:

    import torch
    from musicrep import hear
    model = hear.load_model("models/contrastive_MF_gnr")            # or an audio_encoder.pt
    audio = torch.zeros(3, 2 * model.sample_rate)                   # (n_sounds, n_samples)
    scene = hear.get_scene_embeddings(audio, model)                 # (3, 128)
    emb, ts = hear.get_timestamp_embeddings(audio, model)           # (3, 1, 128), (3, 1) ms

Audio is float (n_sounds, n_samples) at ``model.sample_rate`` (16 kHz, the rate of the
Melon mels). Timestamp embeddings are one per non-overlapping 4.096 s chunk, stamped at
the chunk's centre in milliseconds (a sound shorter than one chunk is padded to one
chunk, stamped at the centre of the real audio); scene embeddings are their mean,
which is the paper's track embedding. Embeddings are not L2-normalised.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .inference.embed import CHUNK_SECONDS
from .inference.encoder import Encoder, load_encoder

__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]


class HearModel(torch.nn.Module):
    """An Encoder with the attributes HEAR asks for (a torch Module holding the CNN)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        self.cnn = encoder.model  # registered, so .to()/.parameters() reach the weights
        self.sample_rate = encoder.sample_rate
        self.scene_embedding_size = encoder.dim
        self.timestamp_embedding_size = encoder.dim


def load_model(model_file_path: str | os.PathLike = "", **kwargs) -> HearModel:
    """Load a checkpoint file or model folder (``load_encoder``'s arguments in kwargs,
    e.g. ``input_layout="reference"`` for the authors' published files)."""
    if not str(model_file_path):
        raise ValueError("model_file_path: give a checkpoint file or model folder")
    return HearModel(load_encoder(model_file_path, **kwargs))


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        raise ValueError("audio must be a float tensor of shape (n_sounds, n_samples)")
    return audio


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> ((n_sounds, n_frames, D) float32, (n_sounds, n_frames) ms)."""
    audio = _check_audio(audio)
    enc, sr = model.encoder, model.sample_rate
    n_samples = audio.shape[1]
    duration_ms = 1000.0 * n_samples / sr
    rows = [enc.embed_chunks(x, sr)[0] for x in audio.detach().cpu().float().numpy()]
    n = len(rows[0]) if rows else max(1, int(n_samples / sr // CHUNK_SECONDS))
    emb = np.stack(rows) if rows else np.zeros((0, n, enc.dim), np.float32)
    starts = 1000.0 * CHUNK_SECONDS * np.arange(n)
    centres = starts + np.minimum(1000.0 * CHUNK_SECONDS, duration_ms - starts) / 2
    ts = np.broadcast_to(centres, (len(audio), n)).copy()
    return torch.from_numpy(emb).to(audio.device), torch.from_numpy(ts).float().to(audio.device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, D) float32: the mean over each sound's chunks."""
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(dim=1)
