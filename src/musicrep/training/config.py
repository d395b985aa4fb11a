"""Training configuration: the original JSON keys plus this project's, validated.

A config is a JSON object. The keys of the original code keep their names and
meaning; everything else has a default, so the original configs load unchanged.
`load_config` checks keys, types, values, files and the device, and reports the first
problem as one `ConfigError` line that names the key and what would be valid.

Relative paths (dataset files, id2tag_file, embedding_matrix_file, save_dir) are
relative to the current working directory, as in the original scripts; run the
scripts from the repository root (the Makefile and the configs assume so).

Which views and losses a run has. A *view* is one modality of a track (see views.py:
"audio", "cf", "genre", "tags"; and "audio2", a second crop of the track for
self-supervision, whose augmentation the `aug_*` keys set). A contrastive run names its
`views` and the `pairs` it contrasts (default: every pair); a baseline names the
`targets` its heads predict from the audio embedding. The paper's `encoder` key is
shorthand for those:

    encoder   contrastive views / pairs                              baseline targets
    MF        audio, cf      / (audio, cf)                           cf
    gnr       audio, genre   / (audio, genre)                        genre
    MF_gnr    audio, cf, genre / (audio, genre) (audio, cf) (cf, genre)  cf, genre

Which script trains what (`script_for`; the Makefile asks `python -m musicrep.training.config
script CONFIG`):

    baseline_train.py  objective "baseline"     any targets
    single_train.py    objective "contrastive"  one pair   (paper: MF, gnr)
    train.py           objective "contrastive"  several pairs (paper: MF_gnr, the default
                                                when a config has no `encoder` key, as
                                                the authors' contrastive_MF_gnr.json)
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ..audio import INPUT_LAYOUTS
from ..errors import ConfigError
from ..settings import FIELDS, TrainConfig

ENCODERS = ("MF", "gnr", "MF_gnr")
OBJECTIVES = ("baseline", "contrastive")
AGGREGATIONS = ("self", "mean")
SELECT_ON = ("sum", "audio")  # select_on: which validation terms pick best.pt
AUGMENTATION_DB = ("aug_gain_db", "aug_filter_db", "aug_noise_db")  # the audio2 view's, in dB

# The paper's `encoder` values as views. Pairs in the original's order of loss terms.
ENCODER_VIEWS: dict[str, tuple[str, ...]] = {"MF": ("cf",), "gnr": ("genre",), "MF_gnr": ("cf", "genre")}
ENCODER_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "MF": (("audio", "cf"),),
    "gnr": (("audio", "genre"),),
    "MF_gnr": (("audio", "genre"), ("audio", "cf"), ("cf", "genre")),
}

# script name -> (objective it trains, what it accepts, in words)
SCRIPTS: dict[str, tuple[str, str]] = {
    "baseline_train.py": ("baseline", "heads on the audio embedding (encoder MF | gnr | MF_gnr, or targets)"),
    "single_train.py": ("contrastive", "one pair of views (encoder MF | gnr)"),
    "train.py": ("contrastive", "several pairs of views (encoder MF_gnr, the default)"),
}
DEFAULT_ENCODER = {"train.py": "MF_gnr"}  # the authors' contrastive_MF_gnr.json has no encoder key

# The paper's six configurations (configs/<name>.json) and the script that trains each.
PAPER_CONFIGS: dict[str, str] = {
    "baseline_MF": "baseline_train.py",
    "baseline_gnr": "baseline_train.py",
    "baseline_MF_gnr": "baseline_train.py",
    "contrastive_MF": "single_train.py",
    "contrastive_gnr": "single_train.py",
    "contrastive_MF_gnr": "train.py",
}

REQUIRED = ("experiment_name", "train_dataset_file", "validation_dataset_file")

# The shipped configs (the paper's six and the tags views'): package data, so an installed
# musicrep finds them without the source tree; the checkout's configs/ links here.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_config(name: str) -> Path:
    """The shipped config file `name` (e.g. "contrastive_MF_gnr")."""
    return CONFIG_DIR / f"{name}.json"


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    name = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        dict: "an object",
        list: "a list",
    }.get(base, str(base))
    return name + (" or null" if type(None) in typing.get_args(tp) else "")


def _check_type(key: str, value: Any) -> Any:
    if key == "bf16":  # the one key that takes a bool or a word
        if isinstance(value, bool) or value == "auto":
            return value
        raise ConfigError(
            f"config key 'bf16' must be \"auto\", true or false, got {json.dumps(value)}"
        )
    hints = typing.get_type_hints(TrainConfig)
    tp = hints[key]
    optional = type(None) in typing.get_args(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got null")
    base = tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(tp) if a is not type(None))
    base = typing.get_origin(base) or base
    ok = (
        (base is bool and isinstance(value, bool))
        or (base is int and isinstance(value, int) and not isinstance(value, bool))
        or (base is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (base is str and isinstance(value, str))
        or (base is dict and isinstance(value, dict))
        or (base is list and isinstance(value, list))
    )
    if not ok:
        raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {json.dumps(value)}")
    return float(value) if base is float else value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"config key '{key}' is {json.dumps(value)}; valid: {', '.join(map(json.dumps, choices))}"
        )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["epochs=2", "device=cpu"] -> {"epochs": 2, "device": "cpu"}; values are JSON,
    falling back to the raw string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def build_config(
    raw: dict[str, Any], script: str | None = None, check_files: bool = True
) -> TrainConfig:
    """Validate a dict of config values into a TrainConfig (see module docstring): keys
    and types, the objective and views, values, the device, then the files."""
    values = _checked_types(raw)
    _resolve_objective(values, script)
    values.update(_resolve_views(values))
    cfg = TrainConfig(**values)
    if script is not None and script_for(cfg) != script:
        key = "encoder" if cfg.encoder else "pairs"
        shown = cfg.encoder if cfg.encoder else cfg.pairs
        raise ConfigError(
            f"config key '{key}' is {json.dumps(shown)} but {script} trains "
            f"{SCRIPTS[script][1]} (use {script_for(cfg)})"
        )
    _check_values(cfg)
    _check_device(cfg.device)
    if check_files:
        _check_files(cfg)
    return cfg


def _checked_types(raw: dict[str, Any]) -> dict[str, Any]:
    """Known keys, the required ones present, each value of its key's type."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a JSON object of key: value pairs")
    for key in raw:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            hint = (
                f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(FIELDS)}"
            )
            raise ConfigError(f"unknown config key '{key}'{hint}")
    for key in REQUIRED:
        if key not in raw:
            raise ConfigError(f"config key '{key}' is required")
    return {k: _check_type(k, v) for k, v in raw.items()}


def _resolve_objective(values: dict[str, Any], script: str | None) -> None:
    """The objective (and the default encoder) `script` trains; the objective must be valid."""
    if script is not None:
        objective = SCRIPTS[script][0]
        if values.get("objective") is None:
            values["objective"] = objective
        elif values["objective"] != objective:
            other = [s for s, (o, _) in SCRIPTS.items() if o == values["objective"]]
            raise ConfigError(
                f"config key 'objective' is {json.dumps(values['objective'])} but {script} trains "
                f'"{objective}" (use {" or ".join(other) or "another script"})'
            )
        if values.get("encoder") is None and not (values.get("views") or values.get("targets")):
            values["encoder"] = DEFAULT_ENCODER.get(script)
    if values.get("objective") is None:
        raise ConfigError(
            f"config key 'objective' is required here; valid: {', '.join(map(json.dumps, OBJECTIVES))}"
        )
    _choice("objective", values["objective"], OBJECTIVES)


def _check_values(cfg: TrainConfig) -> None:
    """Choices, the run folder's name, positive and finite numbers."""
    _choice("aggregation", cfg.aggregation, AGGREGATIONS)
    _choice("input_layout", cfg.input_layout, INPUT_LAYOUTS)
    _choice("select_on", cfg.select_on, SELECT_ON)
    if (
        not cfg.experiment_name.strip()
        or "/" in cfg.experiment_name
        or cfg.experiment_name in (".", "..")
    ):
        raise ConfigError(
            f"config key 'experiment_name' must be a plain folder name, got {json.dumps(cfg.experiment_name)}"
        )

    positive = {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "num_heads": cfg.num_heads,
        "log_interval": cfg.log_interval,
        "save_model_every": cfg.save_model_every,
        "crop_frames": cfg.crop_frames,
        "max_genres": cfg.max_genres,
        "max_tags": cfg.max_tags,
        "learning_rate": cfg.learning_rate,
        "contrastive_temperature": cfg.contrastive_temperature,
        "width": cfg.width,
    }
    if cfg.max_steps_per_epoch is not None:
        positive["max_steps_per_epoch"] = cfg.max_steps_per_epoch
    if cfg.patience is not None:
        positive["patience"] = cfg.patience
    positive["val_every"] = cfg.val_every
    if cfg.max_val_tracks is not None:
        positive["max_val_tracks"] = cfg.max_val_tracks
    for key, v in positive.items():
        if not v > 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {v}")
    for key in ("weight_decay", "num_workers", "seed", "min_epochs"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {getattr(cfg, key)}")
    if cfg.seed >= 2**32:  # seeds derived from it must fit torch's 64-bit generator seeds
        raise ConfigError(f"config key 'seed' must be < 2**32, got {cfg.seed}")
    for key in ("learning_rate", "contrastive_temperature", "width", "weight_decay"):
        if not math.isfinite(getattr(cfg, key)):  # JSON's Infinity would only fail later
            raise ConfigError(f"config key '{key}' must be a finite number, got {getattr(cfg, key)}")
    _check_augmentation(cfg)


def _check_augmentation(cfg: TrainConfig) -> None:
    """The audio2 view's augmentation strengths: finite and >= 0 (0: off), the shift >= 0
    (whether the tracks are long enough for it is checked on the data: views/audio_pair.py)."""
    for key in AUGMENTATION_DB:
        v = getattr(cfg, key)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(
                f"config key '{key}' must be a finite number >= 0 (dB; 0 turns it off), got {v}")
    if cfg.aug_min_shift < 0:
        raise ConfigError(
            f"config key 'aug_min_shift' must be >= 0 (frames), got {cfg.aug_min_shift}")


def _check_device(dev: str) -> None:
    """The device is auto, cpu, cuda or cuda:N, and that GPU exists (torch is imported only then)."""
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(
            f'config key \'device\' is {json.dumps(dev)}; valid: "auto", "cpu", "cuda", "cuda:N"'
        )
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f'config key \'device\' is {json.dumps(dev)} but CUDA is not available here; use "cpu" or "auto"'
            )
        if ":" in dev and int(dev[5:]) >= torch.cuda.device_count():
            raise ConfigError(
                f"config key 'device' is {json.dumps(dev)} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )


def _check_files(cfg: TrainConfig) -> None:
    """The dataset files, the genre vocabulary and the views' encoder start files exist."""
    files = {
        "train_dataset_file": cfg.train_dataset_file,
        "validation_dataset_file": cfg.validation_dataset_file,
    }
    if cfg.id2tag_file:
        files["id2tag_file"] = cfg.id2tag_file
    from ..views import VIEWS  # torch; only once the keys are known to be good

    for view in cfg.views or []:  # encoders' start files (word2vec matrices, ...)
        files.update(VIEWS[view].encoder_files(cfg))
    for key, p in files.items():
        if not Path(p).is_file():
            default = (
                " (the default: next to train_dataset_file)"
                if key.endswith("matrix_file") and not getattr(cfg, key, None)
                else ""
            )
            raise ConfigError(f"config key '{key}': file not found: {p}{default}")


def _resolve_views(values: dict[str, Any]) -> dict[str, Any]:
    """`encoder` or `views`/`pairs`/`targets` -> explicit views, pairs and targets."""
    from ..views import VIEWS

    encoder, views, pairs, targets = (values.get(k) for k in ("encoder", "views", "pairs", "targets"))
    baseline = values["objective"] == "baseline"
    if encoder is not None:
        _choice("encoder", encoder, ENCODERS)
        if views is not None or pairs is not None or targets is not None:
            raise ConfigError("config key 'encoder' names the views itself: leave out 'views', 'pairs' and 'targets'")
        if baseline:
            return {"views": ["audio"], "pairs": [], "targets": list(ENCODER_VIEWS[encoder])}
        pairs = [list(p) for p in ENCODER_PAIRS[encoder]]
        return {"views": ["audio", *ENCODER_VIEWS[encoder]], "pairs": pairs, "targets": []}
    if baseline:
        if views not in (None, ["audio"]) or pairs:
            raise ConfigError("a baseline has heads, not pairs: give 'targets' (or 'encoder'), not 'views'/'pairs'")
        if not targets:
            raise ConfigError("config key 'encoder' or 'targets' is required; valid encoders: " + ", ".join(map(json.dumps, ENCODERS)))
        _check_view_list("targets", targets, VIEWS, allow_audio=False)
        return {"views": ["audio"], "pairs": [], "targets": list(targets)}
    if targets:
        raise ConfigError("config key 'targets' is for baselines; a contrastive run takes 'views' and 'pairs'")
    if not views:
        raise ConfigError("config key 'encoder' or 'views' is required; valid encoders: " + ", ".join(map(json.dumps, ENCODERS)))
    _check_view_list("views", views, VIEWS, allow_audio=True)
    if views[0] != "audio" or len(views) < 2:
        raise ConfigError(f"config key 'views' must start with \"audio\" and name another view, got {json.dumps(views)}")
    if pairs is None:
        pairs = [list(p) for p in itertools.combinations(views, 2)]
    bad = [p for p in pairs if not (isinstance(p, list) and len(p) == 2 and p[0] != p[1] and set(p) <= set(views))]
    if not pairs or bad:
        raise ConfigError(f"config key 'pairs' must be a list of [view, view] pairs of two different 'views' {json.dumps(views)}, got {json.dumps(bad or pairs)}")
    if len({frozenset(p) for p in pairs}) != len(pairs):
        raise ConfigError(f"config key 'pairs' names a pair twice: {json.dumps(pairs)}")
    unpaired = set(views) - {v for p in pairs for v in p}
    if unpaired:
        raise ConfigError(f"config key 'views': {json.dumps(sorted(unpaired))} appear in no pair (their encoders would not train)")
    return {"views": list(views), "pairs": [list(p) for p in pairs], "targets": []}


def _check_view_list(key: str, names: list, known: dict, allow_audio: bool) -> None:
    # targets (allow_audio False): the views a head can predict, those with a target field
    valid = [v for v in known if allow_audio or known[v].target_field is not None]
    for v in names:
        if v not in valid:
            raise ConfigError(f"config key '{key}' names {json.dumps(v)}; valid: {', '.join(map(json.dumps, valid))}")
    if len(set(names)) != len(names):
        raise ConfigError(f"config key '{key}' names a view twice: {json.dumps(names)}")


def script_for(cfg: TrainConfig) -> str:
    """The training script of a config: baselines, one contrastive pair, several pairs."""
    if cfg.objective == "baseline":
        return "baseline_train.py"
    return "single_train.py" if len(cfg.pairs or []) == 1 else "train.py"


def load_config(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    script: str | None = None,
    check_files: bool = True,
) -> TrainConfig:
    """Read a JSON config, apply `--set` overrides, validate (see build_config)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    raw.update(overrides or {})
    return build_config(raw, script=script, check_files=check_files)


def main(argv: list[str] | None = None) -> int:
    """`python -m musicrep.training.config script CONFIG`: print the script that trains CONFIG
    (the Makefile asks this instead of guessing from the file name)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "script":
        print("usage: python -m musicrep.training.config script CONFIG.json", file=sys.stderr)
        return 2
    try:
        raw = json.loads(Path(args[1]).read_text())
        if isinstance(raw, dict) and raw.get("objective") is None:
            raise ConfigError(f"{args[1]}: config key 'objective' is needed to pick a script")
        print(script_for(build_config(raw, check_files=False)))
    except (OSError, ValueError) as e:  # ConfigError is a ValueError
        print(f"error: {args[1]}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
