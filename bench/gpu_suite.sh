#!/usr/bin/env bash
# The GPU suite on a machine that reaches no package registry (its python3 has torch, triton, sentencepiece, pandas,
# scikit-learn, accelerate, matplotlib, requests, rich, but not fastai or this package).
#
#   bash bench/gpu_suite.sh prepare [DATA]   here, with a registry: the pure-Python wheels into bench/gpu_wheels/ and
#                                            the data files the suite reads into bench/gpu_data/ (both git-ignored;
#                                            DATA defaults to $MULTIFIT_SHARED_DATA or ../shared/data)
#   bash bench/gpu_suite.sh [SUITE ARGS]     there: installs the wheels offline into $GPU_SUITE_SITE (/tmp/gpu_suite_site)
#                                            and runs bench/gpu_suite.py with SUITE ARGS (e.g. --dry-run, --budget 240),
#                                            results and log into $OUT (default bench/results)
#
# PYTHON picks the interpreter (default python3). Run from anywhere; paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=bench/gpu_wheels
DATA_DIR=bench/gpu_data
# fastai 2.8.12's text stack and what it imports that the GPU machine lacks, at the versions tested here.
# fastprogress 1.0.5: the newest release that does not import python-fasthtml (and its web-server dependencies).
PINS="fastai==2.8.12 fastcore==2.2.41 fasttransform==0.0.5 fastdownload==0.0.8 fastprogress==1.0.5 plum-dispatch==2.9.0 beartype==0.23.1"
DATA_FILES="corpora/de.txt.gz ddtp/de/train.csv ddtp/de/train_100.csv ddtp/de/valid.csv ddtp/de/unlabelled.csv.gz"

src_digest() { cat multifit_fastai/*.py | sha256sum | cut -c1-16; }

prepare() {
    local data=${1:-${MULTIFIT_SHARED_DATA:-../shared/data}} tmp=$WHEELS.tmp
    for f in $DATA_FILES; do [ -f "$data/$f" ] || { echo "gpu_suite.sh prepare: $data/$f not found; pass the data folder: bash bench/gpu_suite.sh prepare DIR" >&2; exit 2; }; done
    rm -rf "$tmp"; mkdir -p "$tmp"
    # pure-Python wheels only (any Python 3.12 on any platform), without their dependencies: exactly these
    "$PY" -m pip download -q --no-deps --only-binary=:all: --implementation py --platform any --python-version 3.12 -d "$tmp" $PINS
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp" .
    echo "multifit_fastai sources $(src_digest) (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- multifit_fastai 2>/dev/null || echo ', uncommitted changes'))" > "$tmp/SOURCE"
    rm -rf "$WHEELS"; mv "$tmp" "$WHEELS"
    for f in $DATA_FILES; do mkdir -p "$DATA_DIR/$(dirname "$f")"; cp "$data/$f" "$DATA_DIR/$f.tmp"; mv "$DATA_DIR/$f.tmp" "$DATA_DIR/$f"; done
    ls -l "$WHEELS"; cat "$WHEELS/SOURCE"
    du -sh "$WHEELS" "$DATA_DIR"
    echo "ready: on the GPU machine run 'bash bench/gpu_suite.sh' with $WHEELS and $DATA_DIR carried"
}

run() {
    [ -f "$WHEELS/SOURCE" ] || { echo "gpu_suite.sh: no wheels in $WHEELS; run 'bash bench/gpu_suite.sh prepare' first (on a machine with a package registry)" >&2; exit 2; }
    local site=${GPU_SUITE_SITE:-/tmp/gpu_suite_site} out=${OUT:-bench/results} log=gpu_suite.log
    case " $* " in *" --dry-run "*) log=gpu_suite_dry_run.log;; esac
    mkdir -p "$out"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl
    if grep -q "sources $(src_digest) " "$WHEELS/SOURCE"; then
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} GPU_SUITE_SOURCE="wheel: $(cat "$WHEELS/SOURCE")"
    else  # the tree changed since `prepare`: measure the tree's code, not the stale wheel
        echo "gpu_suite.sh: WARNING: multifit_fastai/ differs from the wheel in $WHEELS ($(cat "$WHEELS/SOURCE")); using the working tree's copy" >&2
        export PYTHONPATH=$PWD:$site${PYTHONPATH:+:$PYTHONPATH} GPU_SUITE_SOURCE="working tree, sources $(src_digest)"
    fi
    "$PY" -P -c "import sys, torch, fastai, multifit_fastai; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| fastai', fastai.__version__, '| multifit_fastai', multifit_fastai.__file__)"
    PYTHONUNBUFFERED=1 "$PY" bench/gpu_suite.py --out "$out" "$@" 2>&1 | tee "$out/$log"
}

if [ "${1:-}" = prepare ]; then shift; prepare "$@"; else run "$@"; fi
