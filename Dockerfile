# syntax=docker/dockerfile:1.7
# Two images from one file: `--target operator` and `--target model-server`. Both run as a non-root user
# with a read-only-friendly layout (nothing is written outside /tmp at run time).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app

FROM base AS build
WORKDIR /src
COPY requirements.lock ./
COPY contract/ contract/
COPY operator/ operator/
COPY model-server/ model-server/
# The lock names the contract as `-e ./contract`; constraints take no editable, so it is dropped from them and the
# contract is installed from its folder beside each package.
RUN pip install uv \
 && grep -v '^-e ' requirements.lock > /tmp/constraints.txt \
 && python -m venv /opt/operator /opt/model-server \
 && uv pip install --python /opt/operator/bin/python -c /tmp/constraints.txt ./contract ./operator \
 && uv pip install --python /opt/model-server/bin/python -c /tmp/constraints.txt ./contract ./model-server

FROM base AS operator
COPY --from=build /opt/operator /opt/operator
ENV PATH=/opt/operator/bin:$PATH
USER 10001
ENTRYPOINT ["modelrollout"]
CMD ["run"]

FROM base AS model-server
COPY --from=build /opt/model-server /opt/model-server
ENV PATH=/opt/model-server/bin:$PATH
USER 10001
EXPOSE 8080
ENTRYPOINT ["modelserver"]
CMD ["serve"]
