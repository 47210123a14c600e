# Like good.Dockerfile, but the build step fails (exit 3) after printing a known error.
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS base
ARG ROCM_VERSION
RUN echo "base image for ROCm ${ROCM_VERSION}"

FROM base AS torch-build
ARG PYTORCH_REPO
ARG PYTORCH_REF
ARG PYTORCH_ROCM_ARCH
ARG USE_DISTRIBUTED
ARG USE_ROCM
ARG USE_CUDA
ARG MAX_JOBS
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} USE_DISTRIBUTED=${USE_DISTRIBUTED} USE_ROCM=${USE_ROCM} USE_CUDA=${USE_CUDA} MAX_JOBS=${MAX_JOBS}
COPY fake-configure.sh make-wheel.py /src/
RUN echo "pytorch ${PYTORCH_REPO} ${PYTORCH_REF}" && sh /src/fake-configure.sh && echo "Traceback (most recent call last):" && echo "ModuleNotFoundError: No module named 'uvloop'" && exit 3

FROM scratch AS wheels
COPY --from=torch-build /dist/ /

FROM base AS runtime
ARG VLLM_REPO
ARG VLLM_REF
COPY --from=wheels / /opt/wheels/
RUN echo "vllm ${VLLM_REPO} ${VLLM_REF}" && ls -l /opt/wheels
