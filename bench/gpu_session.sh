#!/usr/bin/env bash
# What the next-frame issue (#16) and the serving bench need from a lent GPU machine (H100/H200,
# JAX backend), in device calls that each fit the 10-minute limit. Nothing here runs in CI; see docs/GPU.md of the shared docs.
#
# Prepare once on the CPU machine, in the repository root (both folders are git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     keras namex optree fastapi starlette pydantic pydantic-core annotated-types \
#     typing-inspection uvicorn python-multipart pydantic-settings python-dotenv \
#     opentelemetry-api importlib-metadata
#   mkdir -p .data && cp -r "$FRAMECAST_MNIST_DIR" .data/mnist
# Then, on the device (carry .whl and .data; results land in $OUT):
#   bash bench/gpu_session.sh train   # encoder-forecaster (framecast train --forecast) from the
#                                     # committed checkpoints, both next-frame archs; resumable:
#                                     # a second call goes on from the last finished epoch
#   bash bench/gpu_session.sh bench   # evaluate them, then bench/serving/serve_bench.py and
#                                     # bench/serving/rollout_bench.py under JAX
# Sizes: FF_EPOCHS/STEPS/BATCH/SAMPLING override the budget (the defaults aim at ~8 minutes on
# an H100, measured there at ~1,200 teacher-forced ConvLSTM2D clips/s; a forecaster clip reads
# the same 19 frames, one at a time). TINY=1 shrinks
# everything to a smoke test that also runs on a CPU (checked so: KERAS_BACKEND=jax on the 2-core
# machine, where XLA spent ~7 minutes compiling the closed-loop train step of the ConvLSTM2D; on
# a GPU budget a minute or two for that compile). $OUT is emptied before every device call, and
# the runs stay in $RUNS on the warm machine between the two calls; each call writes <= 8 files.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: bench/gpu_session.sh train|bench}
OUT=${OUT:-runs/gpu/out}
RUNS=${RUNS:-runs/gpu}
mkdir -p "$OUT" "$RUNS"

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export FRAMECAST_MNIST_DIR=${FRAMECAST_MNIST_DIR:-$PWD/.data/mnist}
(nvidia-smi -L || echo "no nvidia-smi") | tee "$OUT/device.txt"

if [ "${TINY:-0}" = 1 ]; then
  FF_EPOCHS=${FF_EPOCHS:-1}; STEPS=${STEPS:-2}; BATCH=${BATCH:-2}; SAMPLING=${SAMPLING:-4}
  VAL=2; EVAL_CLIPS=8; BENCH="--quick --requests 8 --seconds 2 --bare-seconds 1"; ROLL="--clips 8"
else
  FF_EPOCHS=${FF_EPOCHS:-100}; STEPS=${STEPS:-100}; BATCH=${BATCH:-32}
  SAMPLING=${SAMPLING:-32000}; VAL=128; EVAL_CLIPS=2000
  BENCH="--requests 2000 --seconds 15 --bare-seconds 10"; ROLL="--clips 2000"
fi

train() {  # $1 = arch: the encoder-forecaster, starting from the committed checkpoint
  local arch=$1 name=$1_next_frame
  python3 -m service.cli train --arch "$arch" --task next_frame --forecast \
    --init-from "models/$name" --loss mse --lr 5e-4 --epochs "$FF_EPOCHS" --steps "$STEPS" \
    --batch-size "$BATCH" --seed 4 --sampling-clips "$SAMPLING" --val-clips "$VAL" \
    --out "$RUNS/ff/$name" --quiet
  tar -czf "$OUT/$name.tgz" -C "$RUNS" "ff/$name"  # with checkpoints/: resumable here
}

case "$what" in
  train)
    for arch in convlstm2d conv2d_lstm; do
      train "$arch" 2>&1 | grep -v "^WARNING\|^I0000" | tee -a "$OUT/train.log"
    done ;;
  bench)
    for name in convlstm2d_next_frame conv2d_lstm_next_frame; do
      [ -f "$RUNS/ff/$name/manifest.json" ] || tar -xzf "$OUT/$name.tgz" -C "$RUNS"
      python3 -m service.cli evaluate "$RUNS/ff/$name" --clips "$EVAL_CLIPS" \
        2>&1 | tee -a "$OUT/evaluate.log"
      cp "$RUNS/ff/$name/card.json" "$OUT/$name.card.json"
    done
    # shellcheck disable=SC2086
    python3 bench/serving/rollout_bench.py "$RUNS/ff/convlstm2d_next_frame" $ROLL \
      --out "$OUT/rollout_bench.json" 2>&1 | tee "$OUT/rollout_bench.log"
    # shellcheck disable=SC2086
    python3 bench/serving/serve_bench.py --models-dir "$RUNS/ff" $BENCH --out "$OUT/bench" \
      2>&1 | tee "$OUT/bench.log" ;;
  *) echo "usage: bench/gpu_session.sh train|bench" >&2; exit 2 ;;
esac
