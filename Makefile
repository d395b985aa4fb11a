# Two promises: `make demo` and `make test` work on a fresh clone. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

.PHONY: venv test test-slow demo clean-demo bench lint

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check src scripts tests bench *.py

# ---------------------------------------------------------------------------------------
# The demo: the paper's whole pipeline on the generated corpus. Each step is a file
# target, so a rerun skips what is finished (trainings also resume from last.pt).
DEMO_DATA := data/toy
DEMO_RUNS := runs
DEMO_REPORT := reports/demo
DEMO_SONGS ?= 2000
DEMO_PLAYLISTS ?= 1000
# bf16 ("auto": on where the CPU/GPU has native bf16) about doubles training speed; the
# time goes to a budget in which the contrastive models visibly learn: lr 1e-3 and 12
# epochs of batch 32 at width 0.125 (at lr 1e-4, 8 epochs of 16, their NT-Xent stayed at
# chance; the models leave chance after about 9-10 epochs of this corpus, whatever the
# width: bench/README.md, "The demo's budget" and "The demo's time, per CPU kind").
# DEMO_BF16=false runs it in float32.
DEMO_EPOCHS ?= 12
DEMO_WIDTH ?= 0.125
DEMO_BATCH ?= 32
DEMO_LR ?= 1e-3
DEMO_BF16 ?= auto
DEMO_SET := epochs=$(DEMO_EPOCHS) width=$(DEMO_WIDTH) batch_size=$(DEMO_BATCH) learning_rate=$(DEMO_LR) bf16=$(DEMO_BF16) \
	train_dataset_file=$(DEMO_DATA)/dataset/train.h5 validation_dataset_file=$(DEMO_DATA)/dataset/val.h5 \
	save_dir=$(DEMO_RUNS)
CONFIGS := baseline_MF baseline_gnr baseline_MF_gnr contrastive_MF contrastive_gnr contrastive_MF_gnr
DEMO_MODELS := $(foreach c,$(CONFIGS),$(DEMO_RUNS)/$(c)/audio_encoder.pt)
# The six trainings run DEMO_JOBS at a time, each with DEMO_THREADS torch threads (the
# CPUs shared out): on 2 cores, two one-thread trainings get through about 1.5x the
# samples of one two-thread training (bench/README, "The demo's time, per CPU kind").
# Each training's log appears when it finishes; live curves: tensorboard --logdir DEMO_RUNS.
DEMO_JOBS ?= 2
DEMO_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); t=$$((n / $(DEMO_JOBS))); echo $$((t > 0 ? t : 1)))

demo: $(DEMO_REPORT)/results.json $(DEMO_REPORT)/explorer/index.html
	@cat $(DEMO_REPORT)/results.md

$(DEMO_DATA)/melon/song_meta.json: | $(STAMP)
	$(PY) scripts/make_toy_melon.py --out $(DEMO_DATA)/melon --songs $(DEMO_SONGS) --playlists $(DEMO_PLAYLISTS) --seed 0 --defects --force

$(DEMO_DATA)/dataset/manifest.json: $(DEMO_DATA)/melon/song_meta.json
	$(PY) scripts/create_dataset.py --melon-dir $(DEMO_DATA)/melon --out-dir $(DEMO_DATA)/dataset --seed 0 --overwrite

$(DEMO_DATA)/dataset/embedding_matrix_128.npy: $(DEMO_DATA)/dataset/manifest.json
	$(PY) train_genre_w2v.py --dataset-dir $(DEMO_DATA)/dataset --seed 0

$(DEMO_RUNS)/%/audio_encoder.pt: $(DEMO_DATA)/dataset/embedding_matrix_128.npy
	@echo "== $*: $(DEMO_EPOCHS) epochs at width $(DEMO_WIDTH), lr $(DEMO_LR) (the paper: 400 epochs at width 1.0, lr 1e-4; reduced so the demo runs on a CPU)"
	script=$$($(PY) -m musicrep.training.config script configs/$*.json) && \
		OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) $$script configs/$*.json --set $(DEMO_SET)

# A retrained model (newer than results.json) is evaluated again.
$(DEMO_REPORT)/results.json: $(DEMO_DATA)/dataset/embedding_matrix_128.npy $(wildcard $(DEMO_MODELS))
	@echo "== training the six models, $(DEMO_JOBS) at a time ($(DEMO_THREADS) thread(s) each)"
	$(MAKE) --no-print-directory -j$(DEMO_JOBS) --output-sync=target $(DEMO_MODELS)
	$(PY) evaluate.py --dataset $(DEMO_DATA)/dataset --models $(DEMO_MODELS) --out $(DEMO_REPORT) --seed 0 --probe-jobs 2

# The explorer page of the best model (ndcg@100) in results.json.
$(DEMO_REPORT)/explorer/index.html: $(DEMO_REPORT)/results.json
	$(PY) explore.py --best-of $< --dataset $(DEMO_DATA)/dataset --out $(DEMO_REPORT)/explorer --seed 0 --quiet

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_REPORT) $(foreach c,$(CONFIGS),$(DEMO_RUNS)/$(c))

bench: $(STAMP)
	$(PY) bench/create_dataset.py
	$(PY) bench/train_throughput.py
	$(PY) bench/encode_throughput.py
.PRECIOUS: $(DEMO_RUNS)/%/audio_encoder.pt

# ---------------------------------------------------------------------------------------
# The audio demo: the same pipeline from rendered audio files, the way a user's own
# collection goes through it (make_toy_audio -> import_audio -> create_dataset -> w2v ->
# train -> evaluate -> encode audio files). Generated data: the models are useless for
# real music. Data under data/toy_audio, runs under runs/audio, so `make demo` is untouched.
AUDIO_DATA := data/toy_audio
AUDIO_RUNS := runs/audio
AUDIO_REPORT := reports/demo_audio
AUDIO_TRACKS ?= 600
AUDIO_EPOCHS ?= 12
AUDIO_WIDTH ?= 0.25
AUDIO_BATCH ?= 16
AUDIO_CONFIGS := baseline_MF contrastive_MF_gnr
AUDIO_SET := epochs=$(AUDIO_EPOCHS) width=$(AUDIO_WIDTH) batch_size=$(AUDIO_BATCH) num_workers=0 \
	save_dir=$(AUDIO_RUNS) train_dataset_file=$(AUDIO_DATA)/dataset/train.h5 \
	validation_dataset_file=$(AUDIO_DATA)/dataset/val.h5

.PHONY: demo-audio clean-demo-audio
demo-audio: $(AUDIO_REPORT)/embeddings.npz
	@cat $(AUDIO_REPORT)/results.md

$(AUDIO_DATA)/collection/tracks.csv: | $(STAMP)
	$(PY) scripts/make_toy_audio.py --out $(AUDIO_DATA)/collection --tracks $(AUDIO_TRACKS) --seed 0 --force

$(AUDIO_DATA)/melon/import.json: $(AUDIO_DATA)/collection/tracks.csv
	$(PY) scripts/import_audio.py --audio-dir $(AUDIO_DATA)/collection --tracks $(AUDIO_DATA)/collection/tracks.csv \
		--playlists $(AUDIO_DATA)/collection/playlists.csv --out $(AUDIO_DATA)/melon

$(AUDIO_DATA)/dataset/manifest.json: $(AUDIO_DATA)/melon/import.json
	$(PY) scripts/create_dataset.py --melon-dir $(AUDIO_DATA)/melon --out-dir $(AUDIO_DATA)/dataset --seed 0 --overwrite

$(AUDIO_DATA)/dataset/embedding_matrix_128.npy: $(AUDIO_DATA)/dataset/manifest.json
	$(PY) train_genre_w2v.py --dataset-dir $(AUDIO_DATA)/dataset --seed 0

$(AUDIO_RUNS)/%/audio_encoder.pt: $(AUDIO_DATA)/dataset/embedding_matrix_128.npy
	@echo "== audio demo $*: $(AUDIO_EPOCHS) epochs at width $(AUDIO_WIDTH) (generated audio; the paper: 400 epochs at width 1.0)"
	script=$$($(PY) -m musicrep.training.config script configs/$*.json) && $(PY) $$script configs/$*.json --set $(AUDIO_SET)

$(AUDIO_REPORT)/results.json: $(foreach c,$(AUDIO_CONFIGS),$(AUDIO_RUNS)/$(c)/audio_encoder.pt)
	$(PY) evaluate.py --dataset $(AUDIO_DATA)/dataset --models $^ --out $(AUDIO_REPORT) --seed 0

$(AUDIO_REPORT)/embeddings.npz: $(AUDIO_REPORT)/results.json
	$(PY) encode.py --checkpoint $(AUDIO_RUNS)/contrastive_MF_gnr/audio_encoder.pt \
		$$(ls $(AUDIO_DATA)/collection/audio/000/* | head -n 4) --out $@
	$(PY) -c "import numpy as np; d = np.load('$@'); print('encoded', d['embeddings'].shape, 'from', list(d['paths']))"

clean-demo-audio:
	rm -rf $(AUDIO_DATA) $(AUDIO_REPORT) $(AUDIO_RUNS)
.PRECIOUS: $(AUDIO_RUNS)/%/audio_encoder.pt

# ---------------------------------------------------------------------------------------
# The study (issue #11): every config plus the tags views, 3 seeds, each trained to
# convergence (early stopping) on one generated corpus, evaluated on both layers, with
# bootstrap intervals and paired comparisons. About 2.5 hours on a 2-core CPU; not part
# of `make test` or CI. Every run is a file under STUDY_DIR, so a rerun resumes. Put
# STUDY_DIR outside the work tree; the finished report is copied to reports/study.
# STUDY_SMOKE=1: the same pipeline with a tiny corpus and budget (minutes), its own
# directory, no copy to reports/study. Generated data: the models are useless for real music.
# STUDY_READING: the hand-written reading of the finished study, put into results.md.
STUDY_SMOKE ?=
STUDY_DIR ?= $(if $(STUDY_SMOKE),runs/study_smoke,runs/study)
STUDY_READING ?= reports/study_reading.md
STUDY_PUBLISH = --publish reports/study $(if $(wildcard $(STUDY_READING)),--reading $(STUDY_READING))
.PHONY: study study-report
study: $(STAMP)
	$(PY) scripts/study.py --study-dir $(STUDY_DIR) $(if $(STUDY_SMOKE),--smoke,$(STUDY_PUBLISH))

# Rebuild the report (and its reports/study copy) from the finished runs of STUDY_DIR.
study-report: $(STAMP)
	$(PY) scripts/study.py --study-dir $(STUDY_DIR) --report-only $(if $(STUDY_SMOKE),,$(STUDY_PUBLISH))

# ---------------------------------------------------------------------------------------
# The mechanism study (reports/mechanism/PLAN.md, issue 21): corpora G0, G1, G2, their
# manipulation checks (G1 must meet its targets before any training), the contrastive
# configs x seeds at one fixed budget, H1-H4 with Holm and TOST. The pre-registered family
# runs first, so stopping early leaves it complete; every run is a file under STUDY_DIR, so
# a rerun resumes (put STUDY_DIR outside the work tree; default runs/mechanism). About
# 3.4 hours on a 2-core CPU (the plan prints its estimate first). STUDY_SMOKE=1: the same
# code path in minutes (default runs/mechanism_smoke). mechanism-report: the report of
# what has finished. reports/mechanism/ is filled by hand from STUDY_DIR/report.
MECH_DIR = $(if $(filter file,$(origin STUDY_DIR)),runs/mechanism$(if $(STUDY_SMOKE),_smoke),$(STUDY_DIR))
.PHONY: mechanism mechanism-report
mechanism: $(STAMP)
	$(PY) scripts/study.py --mechanism --study-dir $(MECH_DIR) $(if $(STUDY_SMOKE),--smoke)

mechanism-report: $(STAMP)
	$(PY) scripts/study.py --mechanism --study-dir $(MECH_DIR) --report-only

# ---------------------------------------------------------------------------------------
# The real-audio benchmark on held-out tracks (docs/real-benchmark.md, "Training on the
# real corpus"). Real recordings: Debian's game soundtracks and music21 scores rendered
# by fluidsynth (needs apt-get, dpkg-deb and fluidsynth). The corpus goes to REAL_DIR,
# the import and the dataset (test 30%, val 15% of the rest, stratified on genres) to REAL_DATA,
# trainings to REAL_RUNS, tables to REAL_OUT: put them outside the work tree (the
# defaults are under the git-ignored data/). The dataset is never rebuilt over a finished
# one (a changed corpus stops at create_dataset: remove REAL_DATA/dataset and the runs
# trained on it, then rerun), so a trained model is only ever scored on its own test split.
# real-bench: the shipped models, random init and log-mel stats (REAL_ANCHOR=NAME=FILE.npz
# adds an anchor computed for REAL_OUT/chunks.csv). real-train: contrastive_audio
# (audio-audio alone) for each of REAL_SEEDS, each run resumable (from last.pt), then the
# same tables with the trained models. REAL_SMOKE=1: one soundtrack, 2 scores per label,
# 2 epochs: the same code path in minutes, in its own directories. REAL_EPOCHS 200: about
# 1.8 CPU-hours for the 3 seeds at width 0.25 (docs/real-benchmark.md, "Budget").
REAL_SMOKE ?=
ifneq ($(REAL_SMOKE),)
REAL_DIR ?= data/real_smoke
REAL_PACKAGES ?= singularity-music
REAL_SCORES ?= 2
REAL_EPOCHS ?= 2
REAL_BATCH ?= 8
REAL_CF_FACTORS ?= 4
else
REAL_DIR ?= data/real_music
REAL_PACKAGES ?=
REAL_SCORES ?= 25
REAL_EPOCHS ?= 200
REAL_BATCH ?= 32
REAL_CF_FACTORS ?= 16
endif
REAL_CACHE ?= $(REAL_DIR)/cache
REAL_DATA ?= $(REAL_DIR)-train
REAL_RUNS ?= $(REAL_DATA)/runs
REAL_OUT ?= $(REAL_DATA)/reports
REAL_TEST_SIZE ?= 0.3
REAL_VAL_SIZE ?= 0.15
REAL_SEEDS ?= 0 1 2
REAL_WIDTH ?= 0.25
REAL_LR ?= 1e-3
REAL_BF16 ?= auto
REAL_ANCHOR ?=
REAL_DATASET := $(REAL_DATA)/dataset
REAL_SET = epochs=$(REAL_EPOCHS) width=$(REAL_WIDTH) batch_size=$(REAL_BATCH) \
	learning_rate=$(REAL_LR) bf16=$(REAL_BF16) num_workers=0 save_dir=$(REAL_RUNS) \
	train_dataset_file=$(REAL_DATASET)/train.h5 validation_dataset_file=$(REAL_DATASET)/val.h5
REAL_BENCH = $(PY) scripts/real_benchmark.py $(REAL_DIR) --split-from $(REAL_DATASET) --split test \
	$(if $(REAL_ANCHOR),--anchor $(REAL_ANCHOR))
REAL_TRAINED := $(foreach s,$(REAL_SEEDS),$(REAL_RUNS)/contrastive_audio_s$(s)/audio_encoder.pt)

.PHONY: real-bench real-train
real-bench: $(REAL_DATASET)/manifest.json
	$(REAL_BENCH) --models models/*/ --write-chunks $(REAL_OUT)/chunks.csv --out $(REAL_OUT)/shipped
	$(REAL_BENCH) --models models/*/ --label-column era form --group-column work --within '' \
		--out $(REAL_OUT)/shipped-era-form

real-train: $(REAL_TRAINED)
	$(REAL_BENCH) --models $^ models/*/ --out $(REAL_OUT)/trained
	$(REAL_BENCH) --models $^ models/*/ --label-column era form --group-column work --within '' \
		--out $(REAL_OUT)/trained-era-form

$(REAL_DIR)/manifest.json: | $(STAMP)
	$(PY) scripts/real_music.py --out $(REAL_DIR) --cache $(REAL_CACHE) --scores $(REAL_SCORES) \
		$(if $(REAL_PACKAGES),--packages $(REAL_PACKAGES))

$(REAL_DATA)/melon/import.json: $(REAL_DIR)/manifest.json
	$(PY) scripts/import_audio.py --audio-dir $(REAL_DIR)/audio --tracks $(REAL_DIR)/tracks.csv \
		--playlists $(REAL_DIR)/playlists.csv --out $(REAL_DATA)/melon

$(REAL_DATASET)/manifest.json: $(REAL_DATA)/melon/import.json
	$(PY) scripts/create_dataset.py --melon-dir $(REAL_DATA)/melon --out-dir $(REAL_DATASET) \
		--seed 0 --test-size $(REAL_TEST_SIZE) --val-size $(REAL_VAL_SIZE) --cf-factors $(REAL_CF_FACTORS)

$(REAL_RUNS)/contrastive_audio_s%/audio_encoder.pt: | $(REAL_DATASET)/manifest.json
	@echo "== contrastive_audio seed $*: $(REAL_EPOCHS) epochs at width $(REAL_WIDTH), batch $(REAL_BATCH), lr $(REAL_LR) on $(REAL_DATASET)"
	$(PY) single_train.py configs/contrastive_audio.json --set $(REAL_SET) seed=$* \
		experiment_name=contrastive_audio_s$*
.PRECIOUS: $(REAL_RUNS)/contrastive_audio_s%/audio_encoder.pt
