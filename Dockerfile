# zapflow: the worker image (ingest, rules, actions; also the gateway simulator).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 zapflow \
    && mkdir -p /var/lib/zapflow /run/zapflow/tokens /etc/zapflow \
    && chown -R zapflow /var/lib/zapflow /run/zapflow

WORKDIR /opt/zapflow
# The locked versions CI tested; dev tools are not needed at run time but are few and small.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip install --no-deps .
COPY rules /etc/zapflow/rules
COPY deploy/zapflow.yaml /etc/zapflow/zapflow.yaml

USER zapflow
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["zapflow"]
CMD ["run", "--config", "/etc/zapflow/zapflow.yaml", "--rules", "/etc/zapflow/rules"]
