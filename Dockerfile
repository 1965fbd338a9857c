# framecast: the HTTP service with its bundled checkpoints.
#
# Needs Docker >= 17.05 (multi-stage builds), nothing more: no BuildKit-only instruction and no
# `# syntax=` line (which makes BuildKit fetch a frontend image from Docker Hub on every build,
# and an offline or mirrored builder fail at once). BuildKit, where it is on, builds the
# independent stages side by side; the classic builder builds them in order.
#
#   docker build -t framecast:gpu .                          # default: GPU-capable (CUDA via pip)
#   docker build -t framecast:cpu --build-arg VARIANT=cpu .  # CPU only (tensorflow-cpu), ~3 GB smaller
#   docker run --gpus all -p 8000:8000 framecast:gpu
#
# Why python:3.11-slim and not tensorflow/tensorflow:*-gpu or nvidia/cuda:
# - TensorFlow's supported Linux GPU install is `pip install tensorflow[and-cuda]`: the CUDA and
#   cuDNN user-space libraries arrive as pip wheels (nvidia-*-cu12) matched to that TF release.
#   The driver is the host's, injected by the NVIDIA Container Toolkit (`--gpus`, or compose's
#   device reservation), so no nvidia/cuda base (and no second copy of CUDA) is needed.
# - The TF images pin their own TF and Python; our pyproject would reinstall TF on top of them.
# - One base for both variants: the CPU and GPU images differ only in the extra they install
#   ([cpu] or [gpu] of pyproject.toml), i.e. which TF wheel they hold.
#
# Layers: pyproject.toml alone -> dependencies (cached until pyproject.toml changes) -> the
# framecast wheel (source + bundled models/*/model.keras, manifest.json, card.*).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# --- dependencies: their own layer, rebuilt only when pyproject.toml changes -------------------
FROM base AS deps
# VARIANT is 'gpu' (default) or 'cpu': the pyproject extra of that name brings the one TensorFlow
# wheel, tensorflow[and-cuda] (TF + the nvidia-*-cu12 CUDA/cuDNN wheels) or tensorflow-cpu. The
# base dependencies hold no TensorFlow wheel, so nothing here has to drop one.
ARG VARIANT=gpu
WORKDIR /build
COPY pyproject.toml ./
# The requirement list is read from pyproject.toml (the one source of truth): exactly what
# `pip install 'framecast[gpu]'` (or `[cpu]`) installs outside Docker.
RUN case "$VARIANT" in gpu|cpu) ;; *) echo "VARIANT must be gpu or cpu, got '$VARIANT'" >&2; exit 2;; esac \
 && python -c "import sys, tomllib; \
p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
reqs = p['dependencies'] + p['optional-dependencies'][sys.argv[1]]; \
open('requirements.txt', 'w').write('\n'.join(reqs) + '\n')" "$VARIANT" \
 && cat requirements.txt \
 && pip install --no-cache-dir -r requirements.txt

# --- the framecast wheel (built apart so the image holds no build tools or source copy) --------
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models/ models/
COPY service/ service/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- the image ---------------------------------------------------------------------------------
FROM deps AS runtime
ARG VARIANT=gpu
LABEL org.opencontainers.image.title="framecast" \
      org.opencontainers.image.description="Conv2D+LSTM and ConvLSTM2D video models over HTTP" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ai.framecast.variant="${VARIANT}"

# The wheel (~10 MB with the bundled checkpoints) is copied from its stage, then installed: a
# bind mount (RUN --mount) would save that layer but needs BuildKit.
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/framecast-*.whl \
 && rm -rf /build /wheels \
 && python -c "from models.repository import BUNDLED_DIR, discover; print('bundled models:', [p.name for p in discover(BUNDLED_DIR)])"

# Unprivileged user with a writable home (Keras writes ~/.keras).
RUN groupadd --system --gid 10001 framecast \
 && useradd --system --uid 10001 --gid framecast --create-home --home-dir /home/framecast framecast
USER 10001:10001
WORKDIR /home/framecast

# Settings are environment variables with the FRAMECAST_ prefix (service/config.py); the default
# models directory is the bundled one inside the installed package. Mount other checkpoints and
# set FRAMECAST_MODELS_DIR to use them (see docker-compose.yml).
ENV KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    FRAMECAST_LOG_LEVEL=info \
    FRAMECAST_GRPC_PORT=8001

# HTTP (REST and V2) on 8000, V2 over gRPC on 8001 (Triton's ports); -e FRAMECAST_GRPC_PORT=off
# serves HTTP alone
EXPOSE 8000 8001

# /readyz is 200 once every model is loaded and warmed up, 503 before; urllib raises on 503 and
# on a refused connection, so the exit status is 1 then. No curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]

# uvicorn (under `framecast serve`, PID 1 in exec form) stops accepting on SIGTERM and lets
# in-flight requests finish; give it time with `docker stop -t` / compose's stop_grace_period.
STOPSIGNAL SIGTERM
CMD ["framecast", "serve", "--host", "0.0.0.0", "--port", "8000"]
