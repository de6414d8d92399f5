# syntax=docker/dockerfile:1
# nightshift-orchestration: the Prefect 3 server, the Kubernetes worker and the flow runs (the `nightshift`
# command), from one image. Build from the repository root (README: deploy/k8s/README.md):
#   docker build -f deploy/docker/orchestration.Dockerfile -t REGISTRY/nightshift-orchestration:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY core core
COPY orchestration orchestration
# constraints.txt holds the fastapi and sqlalchemy pins without which Prefect 3.8 breaks.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt ./core ./orchestration \
    prefect==3.8.8 prefect-kubernetes==0.8.0 "sqlalchemy[asyncio]"

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp nightshift
COPY --from=build /opt/venv /opt/venv
# HOME (and so PREFECT_HOME) is /tmp: Kubernetes mounts a scratch volume there over the read-only root.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp \
    DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
USER 10001:10001
EXPOSE 4200 8080
CMD ["nightshift", "--help"]
