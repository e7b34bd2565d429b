# Rotator's production image (compose.yaml runs it as web, worker, beat and migrate).
# CI lints this file with hadolint (scripts/test); it never builds it: CI has no Docker engine.

# --- build: a virtualenv holding Rotator and its pinned dependencies, and the static files.
# Every dependency ships a manylinux wheel, so no compiler is needed even here.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/rotator
WORKDIR /src
# Dependencies before the code: a code change leaves this layer cached.
COPY requirements.txt ./
RUN /opt/rotator/bin/pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY config ./config
COPY accounts ./accounts
COPY rotator ./rotator
COPY stats ./stats
COPY templates ./templates
# A placeholder SECRET_KEY: without one, settings would write a generated key into the image.
RUN /opt/rotator/bin/pip install --no-cache-dir --no-deps . \
    && SECRET_KEY=collectstatic-only ROTATOR_VAR_DIR=/var/lib/rotator \
       /opt/rotator/bin/rotator collectstatic --noinput --verbosity 0

# --- final: the same base (the venv's python is a link into it), the venv, the static files.
# Bookworm, not trixie: its slim image still carries tzdata, which DAILY_RESET_TZ needs.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/rotator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROTATOR_VAR_DIR=/var/lib/rotator
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/rotator --no-create-home rotator
COPY --from=build /opt/rotator /opt/rotator
COPY --from=build --chown=rotator:rotator /var/lib/rotator /var/lib/rotator
# Numeric, so that a runtime enforcing runAsNonRoot can tell it is not root.
USER 10001:10001
# Writable by the rotator user: beat keeps its schedule file here.
WORKDIR /var/lib/rotator
EXPOSE 8000
# The slim image has no curl; /healthz answers 503 when the database or Redis is unreachable,
# which makes urlopen raise and the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# As scripts/serve, with one ASGI worker per core unless WEB_CONCURRENCY says otherwise.
# --no-access-log: Rotator writes its own line per request (rotator.request).
CMD ["sh", "-c", "exec uvicorn config.asgi:application --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY:-$(nproc)}\" --lifespan on --no-access-log"]
