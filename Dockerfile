# syntax=docker/dockerfile:1
# Multi-stage image for the API, the Celery worker and beat. Runs as an unprivileged user.

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY infra ./infra
COPY access ./access
COPY consent ./consent
COPY enclave ./enclave
COPY dp_queries ./dp_queries
RUN uv sync --locked --no-dev

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 enclave \
 && useradd --system --uid 10001 --gid enclave --home-dir /app --shell /usr/sbin/nologin enclave \
 && apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build --chown=enclave:enclave /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    ENCLAVE_DATA_DIR=/var/lib/enclave
# Mount points of the named volumes: an empty volume takes the owner and mode of the image's folder,
# so the key folder is the unprivileged user's and private (the key backend refuses anything looser).
RUN mkdir -p /var/lib/enclave /run/enclave-keys \
 && chown enclave:enclave /var/lib/enclave /run/enclave-keys \
 && chmod 0700 /var/lib/enclave /run/enclave-keys
USER enclave
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -fsS http://127.0.0.1:8000/health || exit 1
CMD ["enclave", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
