# servecap runtime image: Python 3.11 venv with the project's pinned *serving* dependencies,
# nginx and redis from Debian, and the `targets` package. Every Python target image is a thin
# `FROM ${RUNTIME_IMAGE}` on top of this one (targets/<kind>/Dockerfile), and the nginx and
# redis services of docker-compose.yml run this image directly.
#
# Build context: the repository root (allow-list in /.dockerignore). Built by
# `servecap images build` (targets/docker/images.py), which first writes
# build/docker/requirements-runtime.txt from pyproject.toml (one source of truth for pins).
#
#   BASE_IMAGE   python:3.11-slim-bookworm (official) or, offline, the debootstrap image
#                servecap/base:bookworm-py311 (targets/docker/build_base.sh). Both are Debian
#                bookworm + CPython 3.11, so the same cp311 wheels install in either.
#   WHEELS_URL   empty: pip installs from the package index. Set (offline builds): a
#                --find-links URL that serves the wheelhouse; images.py serves build/wheelhouse
#                on 127.0.0.1 for the duration of the build (`docker build --network host`), so
#                the 600 MB of wheels never enter the build context or an image layer.
#   SYSTEM_PACKAGES  Debian packages for the nginx and redis services. Debian's, not the
#                official nginx/redis images: the same versions the process launcher runs on
#                the host (scripts/system-deps.sh), one base image, and no registry needed.
#
# No `# syntax=` line and no RUN --mount: builds with the legacy builder and BuildKit alike.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG APP_UID=10001
ARG WHEELS_URL=
ARG SYSTEM_PACKAGES="nginx-light redis-server"

LABEL org.opencontainers.image.title="servecap runtime" \
      io.servecap.image="runtime"

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

USER root
# System packages, the venv and the `app` user (both already in servecap/base; created here
# when building on the official python image).
RUN set -eux; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $SYSTEM_PACKAGES; \
    rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old; \
    if [ ! -x /opt/venv/bin/python ]; then python3 -m venv /opt/venv; fi; \
    if ! getent passwd app >/dev/null; then \
      groupadd --gid "$APP_UID" app; \
      useradd --uid "$APP_UID" --gid "$APP_UID" --create-home --shell /bin/bash app; \
    fi; \
    mkdir -p /models /config; \
    python3 --version

COPY build/docker/requirements-runtime.txt /opt/servecap/requirements-runtime.txt
RUN set -eux; \
    if [ -n "$WHEELS_URL" ]; then \
      pip install --no-index --find-links "$WHEELS_URL" -r /opt/servecap/requirements-runtime.txt; \
    else \
      pip install -r /opt/servecap/requirements-runtime.txt; \
    fi; \
    pip check; \
    rm -rf /root/.cache

# The code last: editing a target rebuilds only this small layer.
COPY targets /app/targets
RUN python -m compileall -q /app/targets
WORKDIR /app
ENV PYTHONPATH=/app \
    HOME=/tmp \
    SERVECAP_MODEL_PATH=/models/cifar10_cnn \
    TF_CPP_MIN_LOG_LEVEL=2
USER ${APP_UID}:${APP_UID}
ENTRYPOINT ["python", "-m", "targets.docker.entrypoint"]
CMD ["exec", "--", "python", "-c", "import targets; print('servecap runtime image: give a command')"]
