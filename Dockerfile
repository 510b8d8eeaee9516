# The gradient service: gunicorn serving service:create_app() on $PORT.
# Stage 1 builds the project and its pinned dependencies; stage 2 carries only the result.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY deploy/requirements.lock ./
RUN pip install --no-cache-dir --prefix=/install -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY schemas ./schemas
RUN pip install --no-cache-dir --prefix=/install --no-deps .


FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
COPY --from=build /install /usr/local

WORKDIR /home/app
USER 10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=2)"]

CMD ["gunicorn", "--config", "python:service.operations.gunicorn_conf", "service:create_app()"]
