# syntax=docker/dockerfile:1
# lai proxy image: docker build -t lai .
#
# Stage one builds lai's wheel (the migrations are inside it, see pyproject.toml) and the
# wheels of its dependencies; stage two installs them on a clean slim Python with no
# compiler, and runs `lai proxy` as an unprivileged user. The config and every byte lai
# stores live in the /data volume. docs/operations.md has the environment variables, the
# compose files and the upgrade steps. (This image was not built on the development
# machines, which cannot pull base images; .github/workflows/release.yml builds it.)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alembic/ alembic/
COPY lai/ lai/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="lai" \
      org.opencontainers.image.description="Self-hosted router for OpenAI-compatible LLM traffic"
RUN groupadd --system --gid 10001 lai \
    && useradd --system --uid 10001 --gid lai --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin lai \
    && mkdir /data && chown lai:lai /data && chmod 0700 /data
# Mounted from the build stage for this one step, so the wheels are not a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/lai-*.whl

# LAI_CONFIG: the config file; relative paths in it (data_dir, a sqlite:/// URL) are
# relative to its folder, so `lai config init`'s defaults land in /data/data. Override
# with LAI_DATABASE_URL, PROVIDER_{ID}_ENDPOINT / _ENABLED / _API_KEY (docs/configuration.md).
ENV LAI_CONFIG=/data/config.toml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/data"]
WORKDIR /data
# Numeric, so that runtimes enforcing runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8012
# /health answers 200 while the proxy serves, whatever the providers' state (liveness).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8012/health', timeout=4)"]
ENTRYPOINT ["lai"]
CMD ["proxy", "--host", "0.0.0.0"]
