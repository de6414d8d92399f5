# syntax=docker/dockerfile:1
# nightshift-ingest: FITS fields and HEALPix maps into tiles in object storage (CPU: astropy, healpy, reproject).
# Build from the repository root (README: deploy/k8s/README.md):
#   docker build -f deploy/docker/ingest.Dockerfile -t REGISTRY/nightshift-ingest:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY core core
COPY services/ingest services/ingest
# Pins come from constraints.txt; only the core and this service are installed.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt ./core ./services/ingest

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp nightshift
COPY --from=build /opt/venv /opt/venv
# HOME is /tmp: Kubernetes mounts a scratch volume there over the read-only root filesystem.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp \
    NIGHTSHIFT_GRPC_HOST=0.0.0.0 NIGHTSHIFT_GRPC_PORT=50051 NIGHTSHIFT_METRICS_PORT=9090
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["nightshift-ingest"]
CMD ["serve"]
