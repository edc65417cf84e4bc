# syntax=docker/dockerfile:1
# alarm-bridge: build a virtualenv in one stage, copy only it and the shipped files into a slim runtime.
#   docker build -t alarm-bridge .
#   docker run -p 8080:8080 alarm-bridge          # the example config: SQLite store, dry-run delivery
#   docker run -v $PWD/my.yaml:/etc/alarm-bridge/config.yaml:ro -p 8080:8080 alarm-bridge
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/alarm-bridge
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
# bridge/defaults links to these: the package ships them as its default templates and rules.
COPY templates ./templates
COPY rules ./rules
# A regular (not editable) install: the runtime stage gets the package inside the venv, not a link to /src.
RUN /opt/alarm-bridge/bin/pip install . \
 && /opt/alarm-bridge/bin/alarm-bridge --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="alarm-bridge" \
      org.opencontainers.image.description="Alert gateway: signed /alarm_v2 alarms and Alertmanager webhooks to DingTalk, WeCom and email"
ENV PATH=/opt/alarm-bridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed uid/gid so Kubernetes can check runAsNonRoot and volumes can be owned by it.
RUN groupadd --system --gid 10001 alarm-bridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin alarm-bridge
COPY --from=builder /opt/alarm-bridge /opt/alarm-bridge
WORKDIR /app
COPY templates ./templates
COPY rules ./rules
COPY alarm-bridge.example.yaml ./alarm-bridge.example.yaml
# The example config's relative paths (templates/, data/) resolve next to it; the data lives in one writable folder.
RUN mkdir -p /etc/alarm-bridge /var/lib/alarm-bridge \
 && cp alarm-bridge.example.yaml /etc/alarm-bridge/config.yaml \
 && ln -s /app/templates /etc/alarm-bridge/templates \
 && ln -s /app/rules /etc/alarm-bridge/rules \
 && ln -s /var/lib/alarm-bridge /etc/alarm-bridge/data \
 && chown 10001:10001 /var/lib/alarm-bridge
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/-/healthy', timeout=4)"]
ENTRYPOINT ["alarm-bridge", "serve"]
CMD ["--config", "/etc/alarm-bridge/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
