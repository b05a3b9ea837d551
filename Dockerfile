# syntax=docker/dockerfile:1
# Stock trading service: gunicorn serving service.wsgi:app.
# Build: `make image` (docker build -t stock-trading:<chart appVersion> .)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the pinned runtime dependencies into a virtualenv -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# Every pinned dependency ships manylinux wheels: no compiler is needed.
RUN pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt
COPY service/ /app/service/
# Compile once here: the runtime root filesystem is read-only. Hash-checked
# .pyc files stay valid whatever timestamps the copy gives the sources.
RUN python -m compileall -q --invalidation-mode checked-hash /app/service

# --- runtime: the virtualenv and the code, no build tools or caches ---------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="stock-trading" \
      org.opencontainers.image.description="Stock trading service (gunicorn + Flask)"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# Owned by root and not writable by the app user.
COPY --from=build /app/service /app/service
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
