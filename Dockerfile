# The Alyx server: gunicorn with gevent workers on :8090, the project mounted at /app.
#
#   With a registry:  docker build -t alyx/alyx .            (python:3.11-slim, pip install)
#   Offline:          python -m alyx image build --mode offline
#                     (BASE=alyx/base:bookworm, the debootstrap base of the runtime images; the
#                     packages installed on the building host are copied into deploy/vendor/)
#
# Mount schema.yaml, alyx.yaml and functions/ (read-only) into /app, a volume on /app/data, and
# /var/run/docker.sock so functions run in sibling containers (docs/deploy.md). The entrypoint starts
# as root only to join the socket's group and own the volumes, then runs gunicorn as user alyx.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONPATH=/opt/alyx/app:/opt/alyx/lib PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 \
    ALYX_PROJECT_DIR=/app ALYX_SERVER_HOST=0.0.0.0 ALYX_SERVER_PORT=8090 \
    TMPDIR=/app/run HOME=/home/alyx

COPY requirements.txt /opt/alyx/requirements.txt
COPY deploy/vendor/ /opt/alyx/lib/
RUN [ -d /opt/alyx/lib/flask ] || pip install --no-cache-dir --target /opt/alyx/lib -r /opt/alyx/requirements.txt; \
    rm -f /opt/alyx/lib/README.md; \
    groupadd --system --gid 10001 alyx && \
    useradd --system --uid 10001 --gid alyx --home-dir /home/alyx --create-home --shell /usr/sbin/nologin alyx && \
    mkdir -p /app/data /app/run /app/functions && chown alyx:alyx /app /app/data /app/run

COPY wsgi.py gunicorn.conf.py /opt/alyx/app/
COPY runtimes/ /opt/alyx/app/runtimes/
COPY static/ /opt/alyx/app/static/
COPY alyx/ /opt/alyx/app/alyx/
COPY deploy/docker-entrypoint.py /opt/alyx/docker-entrypoint.py

# /app/run holds the sandboxes' sockets and code: a volume, so sibling containers can mount it too.
VOLUME ["/app/data", "/app/run"]
WORKDIR /app
EXPOSE 8090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8090/api/health', timeout=3)"]
ENTRYPOINT ["python3", "/opt/alyx/docker-entrypoint.py"]
CMD ["python3", "-m", "gunicorn", "-c", "/opt/alyx/app/gunicorn.conf.py", "--graceful-timeout", "5", "wsgi:app"]
