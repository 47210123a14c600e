# The rehearsal's stand-in for AMD's ROCm base image (scripts/rehearsal-base.sh builds it with the
# engine's classic builder; dockerfiles/rehearsal/make-base.sh says what it holds).
ARG FROM_IMAGE=forge-rehearsal-debian:trixie
FROM ${FROM_IMAGE}
ARG ROCM_VERSION=7.1.1
COPY standins/ /opt/forge-rehearsal/src/
COPY wheelhouse/ /opt/forge-rehearsal/wheelhouse/
COPY make-base.sh /opt/forge-rehearsal/make-base.sh
RUN bash /opt/forge-rehearsal/make-base.sh "${ROCM_VERSION}"
LABEL org.opencontainers.image.description="forge rehearsal: stand-in for rocm/dev-ubuntu-24.04 (not ROCm)"
