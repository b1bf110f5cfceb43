# rollback-watchdog daemon: `docker run -v $PWD/config:/etc/rollback-watchdog:ro -e GITHUB_TOKEN ...`
# The API (probes, /metrics, the levers) listens on 0.0.0.0:9095 inside the container; the default
# config is config/stamps.yaml. docs/deploy.md says how to run it (Kubernetes, systemd).
FROM python:3.11-slim
LABEL org.opencontainers.image.title="rollback-watchdog"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# kind: browser smoke checks (config/stamps.yaml has one) drive Debian's Chromium through
# Playwright (the `browser` extra; its Node.js driver needs libatomic1); Playwright's own browser
# download is never used.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium libatomic1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The dependencies first, from pyproject.toml alone: a change to the code reinstalls our package only.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extra = p["optional-dependencies"]; print(*p["dependencies"], *extra["postgres"], *extra["browser"], sep="\n")' \
    > /tmp/requirements.txt \
 && pip install "setuptools>=77" wheel -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md rollback_watchdog_launcher.py ./
COPY watchdog ./watchdog
COPY detectors ./detectors
COPY actions ./actions
COPY config ./config
RUN pip install --no-deps --no-build-isolation . \
 && useradd --system --uid 10001 --home-dir /var/lib/rollback-watchdog --create-home watchdog \
 && mkdir -p /etc/rollback-watchdog \
 && cp config/stamps.yaml /etc/rollback-watchdog/config.yaml

USER watchdog
WORKDIR /var/lib/rollback-watchdog
# The default config's SQLite store, in the volume (config/stamps.yaml reads ${WATCHDOG_DB_URL};
# replicas set it, or their config's store.url, to PostgreSQL).
ENV WATCHDOG_DB_URL=sqlite:////var/lib/rollback-watchdog/watchdog.db
VOLUME ["/var/lib/rollback-watchdog"]
EXPOSE 9095
# Liveness: 200 from /healthz, else (503, no answer) unhealthy. The slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9095/healthz', timeout=4)"]
ENTRYPOINT ["rollback-watchdog"]
CMD ["run", "-c", "/etc/rollback-watchdog/config.yaml", "--log-format", "json"]
