# syntax=docker/dockerfile:1
#
# Images of Digi, from one build:
#
#   docker build -t digi-manager .                            # the controller-manager (default target)
#   docker build --target worker-base -t digi-worker-base .   # what `digi build KIND_DIR` builds drivers on
#
# The Python dependencies come only from the hashed locks (requirements.lock for
# the runtime, requirements-build.lock for the build backend); `make lock`
# regenerates both from pyproject.toml. Wheels only, so no compiler is needed at
# any stage. tests/test_dockerfile.py runs the builder stage's RUN steps in a
# clean virtualenv, since no container engine runs where the tests do.

# Pinned to an exact patch release of the slim Debian image.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The venv's scripts name their interpreter by absolute path, so the image keeps
# the default; the argument lets tests/test_dockerfile.py run this stage elsewhere.
ARG VENV=/opt/digi
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# The runtime venv is created without pip: the builder's pip installs into it,
# so no packaging tool ends up in the images.
RUN python -m venv --without-pip "${VENV}" \
 && python -m pip install --require-hashes --only-binary=:all: --no-deps -r requirements-build.lock \
 && python -m pip --python "${VENV}/bin/python" install \
      --require-hashes --only-binary=:all: --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY digi/ digi/
COPY manager/ manager/
COPY controllers/ controllers/
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir wheels . \
 && python -m pip --python "${VENV}/bin/python" install --no-deps wheels/digi-*.whl \
 && python -m pip --python "${VENV}/bin/python" check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/digi/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 digi \
 && useradd --system --uid 65532 --gid digi --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin digi
COPY --from=builder /opt/digi /opt/digi

# Drivers of digi kinds: `digi build` adds the kind's driver/ as /kind/driver. The
# worker runs the driver (handler.py) of its working directory, as the local
# backend does. The base image's pip stays so a kind can add driver/requirements.txt.
FROM runtime AS worker-base
WORKDIR /kind/driver
USER 65532:65532
CMD ["python", "-m", "digi.worker"]

FROM runtime AS manager
# The base image's pip/setuptools/wheel are build tools the manager never needs.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel
USER 65532:65532
# 8080: /metrics; 8081: /healthz, /readyz and the API workers use; 9443: admission webhook (TLS).
EXPOSE 8080 8081 9443
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["digi-manager"]
CMD ["--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"]
