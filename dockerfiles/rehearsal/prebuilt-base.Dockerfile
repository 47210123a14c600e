# The prebuilt path's rehearsal base (`scripts/rehearsal-base.sh --prebuilt`; make-prebuilt-base.sh
# says what it holds): a plain Debian with no ROCm at all, as the prebuilt Dockerfile wants.
ARG FROM_IMAGE=forge-rehearsal-debian:trixie
FROM ${FROM_IMAGE}
COPY standins/vllm/ /opt/forge-rehearsal/src/vllm/
COPY standins/fastsafetensors/ /opt/forge-rehearsal/src/fastsafetensors/
COPY wheelhouse/ /opt/forge-rehearsal/wheelhouse/
COPY make-prebuilt-base.sh /opt/forge-rehearsal/make-prebuilt-base.sh
RUN bash /opt/forge-rehearsal/make-prebuilt-base.sh
LABEL org.opencontainers.image.description="forge rehearsal: base for the prebuilt path (no ROCm; not a release)"
