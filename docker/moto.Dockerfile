# moto_server (moto[server] from PyPI) in LocalStack's place, for machines that cannot run the
# LocalStack image: see docker-compose.moto.yml. Same port (4566), same service name, a health
# check that turns healthy only once S3, SQS and DynamoDB answer (docker/moto/ready.py).
#
#   docker build -f docker/moto.Dockerfile -t framefleet/moto:local .
#
# BASE_IMAGE is any Debian 12 image: debian:bookworm-slim where a registry is reachable, the
# image scripts/build-base-images makes from Debian's archive where none is.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Package versions come with the pinned Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# The moto version the test suite runs (scripts/setup), in a venv: Debian's Python is
# externally managed (PEP 668), so pip may not install into it.
ARG MOTO_VERSION=5.2.1
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-cache-dir --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
COPY docker/moto/ready.py /usr/local/bin/moto-ready
ENV PATH=/opt/moto/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    MOTO_ACCOUNT_ID=000000000000
# Non-root like the framefleet services; moto keeps its state in memory, so it writes nowhere
# but /tmp (a tmpfs under compose's read-only root filesystem).
USER 10001:10001
WORKDIR /tmp
EXPOSE 4566
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=30 \
  CMD ["/opt/moto/bin/python3", "/usr/local/bin/moto-ready"]
ENTRYPOINT ["moto_server", "-H", "0.0.0.0", "-p", "4566"]
