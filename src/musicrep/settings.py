"""Every key of a training config, its type and default: `TrainConfig` (a torch-free leaf).

Loading and validating a config file (keys, types, values, files, views) is
`musicrep.training.config`; views, models and the trainer read the keys from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import CROP_FRAMES
from .layout import GENRE_W2V, GENRES


@dataclass
class TrainConfig:
    """Every key of a training config, with its default (required keys have none)."""

    # --- keys of the original code ---
    experiment_name: str
    train_dataset_file: str
    validation_dataset_file: str
    encoder: str | None = None  # "MF" (CF vectors) | "gnr" (genres) | "MF_gnr" (both)
    aggregation: str = "self"  # genre encoder: "self" (attention) | "mean"
    num_heads: int = 4
    contrastive_temperature: float = 0.1
    epochs: int = 400
    batch_size: int = 128  # global: split over DDP ranks
    learning_rate: float = 1e-4
    device: str = "auto"  # "auto" = cuda if available else cpu; "cpu", "cuda", "cuda:N"
    id2tag_file: str | None = None  # genre vocabulary; default genres.json beside the train file
    log_interval: int = 10  # steps between progress-bar / TensorBoard step updates
    save_model_every: int = 20  # epochs between kept epoch_XXXX.pt checkpoints
    # --- added by this project ---
    views: list | None = None  # contrastive: views to train, "audio" first (default: from encoder)
    pairs: list | None = None  # contrastive: [[view, view], ...] (default: every pair of views)
    targets: list | None = None  # baseline: views the heads predict (default: from encoder)
    objective: str | None = None  # "baseline" | "contrastive"; default: what the script trains
    save_dir: str = "runs/"  # outputs go to save_dir/experiment_name/
    # genre word2vec matrix; default embedding_matrix_128.npy beside the train file
    embedding_matrix_file: str | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    num_workers: int = 4  # DataLoader workers per process
    width: float = 1.0  # conv channel multiplier of the audio CNN
    input_layout: str = "transpose"  # "transpose" (correct) | "reference" (original reshape)
    crop_frames: int = CROP_FRAMES
    max_genres: int = 10  # genre tokens per track for the genre encoder
    max_tags: int = 10  # playlist-tag tokens per track for the tags encoder
    # tag word2vec matrix; default tag_embedding_matrix_128.npy beside the train file
    tag_embedding_matrix_file: str | None = None
    # bfloat16 autocast: "auto" (on where the device runs bf16 natively: precision.py), true, false
    bf16: bool | str = "auto"
    # channels-last memory format for the CNN: ~1.4x faster training on CPU (bench/README.md)
    channels_last: bool = True
    gather_distributed: bool = True  # DDP: NT-Xent over the global batch (all-gather)
    max_steps_per_epoch: int | None = None  # cap steps per epoch (smoke tests, benchmarks)
    # early stopping: stop once the validation loss has not improved for this many epochs
    # (`epochs` is then the maximum); null trains all `epochs`
    patience: int | None = None
    # no early stop before this epoch: a loss that sits on its starting plateau (NT-Xent at
    # chance, MSE at the targets' variance) for the first epochs would otherwise end a run
    # that has not started learning (as Lightning's min_epochs)
    min_epochs: int = 0
    # what best.pt, early stopping (and the study's lr grid) look at: "sum", the validation
    # loss of every term; or "audio", only the terms that involve the audio view (a
    # contrastive run's ntxent_audio_*; a term such as ntxent_cf_genre trains the other
    # encoders and says nothing about the audio embedding, which is what gets evaluated).
    # A baseline's terms all involve audio, so both give the same there.
    select_on: str = "sum"
    # validation that scales: validate every `val_every` epochs (and at the last), on at
    # most `max_val_tracks` validation tracks, a subset drawn from `seed` (the same tracks
    # every epoch and after a resume); null: every track (a full Melon val split takes
    # about 17 minutes on 2 CPU cores). With val_every > 1, patience counts epochs: make
    # it a multiple of val_every.
    val_every: int = 1
    max_val_tracks: int | None = None
    # The audio-audio view (views/audio_pair.py, "audio2": a second crop of the same track
    # through the same CNN) and the light augmentation of its pair's crops, on log-mel dB
    # values (Melon's 20 * log10 of mel power). They change nothing in a run without the
    # audio2 view. Each is drawn per crop from (seed, epoch, crop, track): the same seed
    # gives the same crops. Strengths are maxima; 0 turns that augmentation off.
    aug_gain_db: float = 6.0  # gain: one offset in [-x, x] dB added to the whole crop
    aug_filter_db: float = 6.0  # filter: a smooth curve over the 48 bands, knots in [-x, x] dB
    aug_noise_db: float = 2.0  # noise: Gaussian, per time-frequency bin, std drawn in [0, x] dB
    aug_min_shift: int = 0  # time shift: the two crops start at least this many frames apart
    # also augment the first crop (the `audio` view's, which the run's other pairs share);
    # false leaves it plain and augments only the second
    aug_first_crop: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def beside_train(self, name: str) -> Path:
        """A side file of the dataset directory (next to the train split)."""
        return Path(self.train_dataset_file).with_name(name)

    def resolved_embedding_matrix(self) -> Path:
        if self.embedding_matrix_file:
            return Path(self.embedding_matrix_file)
        return self.beside_train(GENRE_W2V)

    def resolved_id2tag(self) -> Path | None:
        if self.id2tag_file:
            return Path(self.id2tag_file)
        p = self.beside_train(GENRES)
        return p if p.is_file() else None

    @property
    def all_views(self) -> list[str]:
        """Every view whose fields the run reads: encoders' and heads' targets."""
        return list(dict.fromkeys([*(self.views or []), *(self.targets or [])]))

    @property
    def run_name(self) -> str:
        """objective_encoder for the paper's configs, else objective_view_view..."""
        views = self.encoder or "_".join(v for v in self.all_views if v != "audio")
        return f"{self.objective}_{views}"

    @property
    def out_dir(self) -> Path:
        return Path(self.save_dir) / self.experiment_name


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
