#!/usr/bin/env bash
# The prepared device check (issue #22): one command that, on a clean checkout, makes its
# own small data and measures training, loading, encoding and DDP on the GPU(s) present.
#
#   bench/gpu_check.sh OUT_DIR              # on a GPU machine: at most ~8 minutes
#   bench/gpu_check.sh --dry-run OUT_DIR    # on a CPU: the same code path, tiny sizes
#
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (bench/README.md, "GPU check").
# Python: $PYTHON, else the project's .venv, else python3. Where that Python lacks the
# audio decoders (soundfile, librosa, soxr) and a folder .whl/ of wheels lies in the
# checkout (the device machine has no registry), they are installed into a temp folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
extra=""
if ! "$py" -c "import soundfile, librosa, soxr" 2>/dev/null && [ -d "$root/.whl" ]; then
    extra="$(mktemp -d)"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$extra" "$root"/.whl/*.whl
fi
export PYTHONPATH="$root/src:$root/bench${extra:+:$extra}${PYTHONPATH:+:$PYTHONPATH}"
export OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
exec "$py" "$root/bench/gpu_check.py" "$@"
