#!/usr/bin/env bash
# What issues #3 and #5 need from a lent GPU machine (H100/H200, JAX backend), in device calls
# that each fit the 10-minute limit. Nothing here runs in CI; see docs/GPU.md of the shared docs.
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
#   bash bench/gpu_session.sh train   # teacher forcing, then closed loop, both next-frame archs
#   bash bench/gpu_session.sh bench   # evaluate them and run bench/serve_bench.py under JAX
# Sizes: TF_EPOCHS/CL_EPOCHS/STEPS/BATCH override the budget (the defaults aim at ~8 minutes on
# an H100: ~1,200 teacher-forced and ~240 closed-loop ConvLSTM2D clips/s). TINY=1 shrinks
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
  TF_EPOCHS=${TF_EPOCHS:-1}; CL_EPOCHS=${CL_EPOCHS:-1}; STEPS=${STEPS:-2}; BATCH=${BATCH:-2}
  VAL=2; EVAL_CLIPS=8; BENCH="--quick --requests 8 --seconds 2 --bare-seconds 1"
else
  TF_EPOCHS=${TF_EPOCHS:-40}; CL_EPOCHS=${CL_EPOCHS:-10}; STEPS=${STEPS:-100}; BATCH=${BATCH:-32}
  VAL=128; EVAL_CLIPS=2000; BENCH="--requests 2000 --seconds 15 --bare-seconds 10"
fi

train() {  # $1 = arch: teacher forcing from scratch, then the closed loop from that run
  local arch=$1 name=$1_next_frame
  python3 -m service.cli train --arch "$arch" --task next_frame --epochs "$TF_EPOCHS" \
    --steps "$STEPS" --batch-size "$BATCH" --seed 1 --lr 1e-3 --loss bce --val-clips "$VAL" \
    --out "$RUNS/tf/$name" --quiet
  python3 -m service.cli train --arch "$arch" --task next_frame --init-from "$RUNS/tf/$name" \
    --rollout 10 --loss mse --epochs "$CL_EPOCHS" --steps "$STEPS" --batch-size "$BATCH" \
    --seed 2 --lr 3e-4 --val-clips "$VAL" --out "$RUNS/cl/$name" --quiet
  rm -rf "$RUNS/tf/$name/checkpoints" "$RUNS/cl/$name/checkpoints"
  tar -czf "$OUT/$name.tgz" -C "$RUNS" "tf/$name" "cl/$name"
}

case "$what" in
  train)
    for arch in convlstm2d conv2d_lstm; do
      train "$arch" 2>&1 | grep -v "^WARNING\|^I0000" | tee -a "$OUT/train.log"
    done ;;
  bench)
    for name in convlstm2d_next_frame conv2d_lstm_next_frame; do
      [ -f "$RUNS/cl/$name/manifest.json" ] || tar -xzf "$OUT/$name.tgz" -C "$RUNS"
      python3 -m service.cli evaluate "$RUNS/cl/$name" --clips "$EVAL_CLIPS" \
        2>&1 | tee -a "$OUT/evaluate.log"
      cp "$RUNS/cl/$name/card.json" "$OUT/$name.card.json"
    done
    # shellcheck disable=SC2086
    python3 bench/serve_bench.py --models-dir "$RUNS/cl" $BENCH --out "$OUT/bench" \
      2>&1 | tee "$OUT/bench.log" ;;
  *) echo "usage: bench/gpu_session.sh train|bench" >&2; exit 2 ;;
esac
