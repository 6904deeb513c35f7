# Two images from one file, built offline (scripts/container_build.sh puts every wheel in .docker-build/):
#   docker build --target train -t stilts-train .   the package with torch; runs `stilts` / `mlflow run`
#   docker build --target serve -t stilts-serve .   onnxruntime + FastAPI only (no torch); model baked in
# BASE_IMAGE needs python3.11 with venv (python:3.11-slim-bookworm, or Debian bookworm + python3-venv).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
# every stage carries it: scripts/container_build.sh removes this project's leftovers by it, nobody else's
LABEL io.stilts-mlflow.project="stilts-mlflow"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 10001 stilts
WORKDIR /home/stilts

# Virtual environments are built in throw-away stages so the wheels never land in an image layer.
FROM base AS train-venv
COPY .docker-build/wheels/train /wheels
RUN python3 -m venv /opt/venv && pip install --no-index --find-links /wheels stilts-mlflow

FROM base AS serve-venv
COPY .docker-build/wheels/serve /wheels
COPY serving/requirements.txt /wheels/requirements.txt
RUN python3 -m venv /opt/venv && pip install --no-index --find-links /wheels -r /wheels/requirements.txt

FROM base AS train
COPY --from=train-venv /opt/venv /opt/venv
# the MLflow Project itself, for `mlflow run /home/stilts/project --env-manager local`
COPY --chown=stilts pyproject.toml README.md MLproject conda.yaml /home/stilts/project/
COPY --chown=stilts stilts_mlflow /home/stilts/project/stilts_mlflow
COPY --chown=stilts serving /home/stilts/project/serving
USER stilts
ENTRYPOINT ["stilts"]
CMD ["--help"]

FROM base AS serve
COPY --from=serve-venv /opt/venv /opt/venv
COPY serving /opt/stilts/serving
# The model: an export directory baked in at build time (MODEL_DIR, inside the build context), or
# fetched at start with --model-uri models:/stilts-xnli-onnx@champion and MLFLOW_TRACKING_URI.
ARG MODEL_DIR=.docker-build/model
COPY ${MODEL_DIR} /model
ENV PYTHONPATH=/opt/stilts
USER stilts
EXPOSE 8080
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz')"]
ENTRYPOINT ["python", "-m", "serving", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model-uri", "/model"]
