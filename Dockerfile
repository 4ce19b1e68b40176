# spendgate: the proxy as a container image.
#
#   docker build -t spendgate .
#   docker run -p 8787:8787 spendgate                # embedded defaults, SQLite in the volume
#   docker run -v $PWD/spendgate.yaml:/etc/spendgate/spendgate.yaml:ro -p 8787:8787 \
#       spendgate serve --config /etc/spendgate/spendgate.yaml --host 0.0.0.0
#
# Two stages: the build stage has pip and a compiler (for any dependency without a wheel for
# the platform); the runtime stage gets only the finished virtualenv, runs as an unprivileged
# user, and works with a read-only root filesystem (writes go to /var/lib/spendgate and /tmp).
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/spendgate
WORKDIR /src
# Dependencies first, from the metadata alone, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
# The grpc extra: OTEL_EXPORTER_OTLP_PROTOCOL=grpc works in the image (imported only when set).
RUN mkdir proxy pricing budgets \
    && /opt/spendgate/bin/pip install ".[grpc]" \
    && /opt/spendgate/bin/pip uninstall -y spendgate
COPY proxy ./proxy
COPY pricing ./pricing
COPY budgets ./budgets
RUN /opt/spendgate/bin/pip install --no-deps . \
    && /opt/spendgate/bin/python -m compileall -q /opt/spendgate \
    && /opt/spendgate/bin/spendgate --version

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 spendgate \
    && useradd --system --uid 10001 --gid spendgate --no-create-home \
        --home-dir /var/lib/spendgate --shell /usr/sbin/nologin spendgate \
    && mkdir -p /var/lib/spendgate /etc/spendgate \
    && chown spendgate:spendgate /var/lib/spendgate
COPY --from=build /opt/spendgate /opt/spendgate
ENV PATH=/opt/spendgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPENDGATE_HEALTHCHECK_URL=http://127.0.0.1:8787/healthz
WORKDIR /var/lib/spendgate
VOLUME ["/var/lib/spendgate"]
USER 10001:10001
EXPOSE 8787
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SPENDGATE_HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["spendgate"]
CMD ["serve", "--host", "0.0.0.0"]
