# syntax=docker/dockerfile:1
# nightshift-inclination: spiral-galaxy inclination (Keras CNN).
# GPU-capable: tensorflow[and-cuda] brings the CUDA runtime and cuDNN as wheels; the NVIDIA container
# toolkit mounts the driver (NVIDIA_* below), so the base needs no CUDA. A smaller CPU-only image:
# --build-arg TENSORFLOW_BUILD=cpu. The service code enables GPU memory growth.
# Build from the repository root (README: deploy/k8s/README.md):
#   docker build -f deploy/docker/inclination.Dockerfile -t REGISTRY/nightshift-inclination:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The service's extra that chooses the TensorFlow build: gpu (tensorflow[and-cuda]) or cpu (tensorflow-cpu).
ARG TENSORFLOW_BUILD=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY core core
COPY services/inclination services/inclination
# Pins come from constraints.txt; only the core and this service (with one TensorFlow build) are installed.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt ./core "./services/inclination[${TENSORFLOW_BUILD}]"

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp nightshift
COPY --from=build /opt/venv /opt/venv
# HOME is /tmp: Kubernetes mounts a scratch volume there over the read-only root filesystem.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp \
    NIGHTSHIFT_GRPC_HOST=0.0.0.0 NIGHTSHIFT_GRPC_PORT=50051 NIGHTSHIFT_METRICS_PORT=9090 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TF_FORCE_GPU_ALLOW_GROWTH=true
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["nightshift-inclination"]
CMD ["serve"]
