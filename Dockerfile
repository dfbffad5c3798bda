# syntax=docker/dockerfile:1.7
# Two images from one file: `--target operator` and `--target model-server`. Both run as a non-root user (10001)
# on a read-only-friendly layout: the virtualenv is root's and compiled at build time, so nothing is written
# outside /tmp at run time. What is installed is decided by hack/install-image.sh alone (this file only RUNs it),
# and tests/integration/image/test_image_install.py runs the same script and serves every model format from it.

FROM python:3.11-slim AS base
# PYTHONDONTWRITEBYTECODE: our packages are compiled at build time; this covers user code on PYTHONPATH (custom
# model classes), whose __pycache__ could not be written on a read-only filesystem anyway.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app

FROM base AS build
# uv pinned so a rebuild resolves the lock the same way; the version `make venv` installed when this was written.
ARG UV_VERSION=0.13.9
# UV_LINK_MODE=copy: the cache is a mount, which uv cannot hard-link across.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_LINK_MODE=copy PYTHON=/usr/local/bin/python3.11
RUN pip install "uv==${UV_VERSION}"
WORKDIR /src
COPY requirements.lock ./
COPY hack/install-image.sh hack/
COPY contract/ contract/

# One build stage per image, each copying only its own package: an operator change does not rebuild the model
# server's layer (the larger one), nor the reverse.
FROM build AS build-operator
COPY operator/ operator/
RUN --mount=type=cache,target=/root/.cache/uv hack/install-image.sh operator /opt/operator

FROM build AS build-model-server
COPY model-server/ model-server/
RUN --mount=type=cache,target=/root/.cache/uv hack/install-image.sh model-server /opt/model-server

FROM base AS labelled
ARG VERSION=dev
ARG SOURCE=https://github.com/modelrollout/modelrollout
LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM labelled AS operator
LABEL org.opencontainers.image.title="modelrollout-operator" \
      org.opencontainers.image.description="ModelRollout operator: serves, scores and rolls out ML models"
COPY --from=build-operator /opt/operator /opt/operator
ENV PATH=/opt/operator/bin:$PATH
USER 10001
ENTRYPOINT ["modelrollout"]
CMD ["run"]

FROM labelled AS model-server
LABEL org.opencontainers.image.title="modelrollout-model-server" \
      org.opencontainers.image.description="ModelRollout model server: sklearn, onnx, xgboost, lightgbm, custom; s3; Kafka"
COPY --from=build-model-server /opt/model-server /opt/model-server
ENV PATH=/opt/model-server/bin:$PATH
USER 10001
EXPOSE 8080
ENTRYPOINT ["modelserver"]
CMD ["serve"]
