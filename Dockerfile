# rollback-watchdog daemon: `docker run -v $PWD/config:/etc/rollback-watchdog:ro -e GITHUB_TOKEN ...`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md rollback_watchdog_launcher.py ./
COPY watchdog ./watchdog
COPY detectors ./detectors
COPY actions ./actions
COPY config ./config
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /var/lib/rollback-watchdog --create-home watchdog \
 && mkdir -p /etc/rollback-watchdog \
 && cp config/stamps.yaml /etc/rollback-watchdog/config.yaml

USER watchdog
WORKDIR /var/lib/rollback-watchdog
VOLUME ["/var/lib/rollback-watchdog"]
ENTRYPOINT ["rollback-watchdog"]
CMD ["run", "-c", "/etc/rollback-watchdog/config.yaml", "--log-format", "json"]
