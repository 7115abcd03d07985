#!/usr/bin/env bash
# Start (or install) the real services the tests use. Idempotent; safe to run repeatedly.
set -euo pipefail

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)  # function sandboxes (docker tier)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)  # function sandboxes (bwrap tier)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)  # offline runtime base image
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)  # Go functions (built on the host) and the generated Go client tests
command -v npm >/dev/null 2>&1 || need_apt+=(npm)  # TypeScript compiler for the generated client tests
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)  # tests/test_deploy_docker.py
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)  # tests/test_deploy_nginx.py (started by the tests)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)  # tests/test_deploy_cluster.py (ip netns)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "provision: need ${need_apt[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL at 127.0.0.1:5432
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "provision: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

# Redis at 127.0.0.1:6379
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.5; done
fi

# Docker engine for the docker sandbox tier: started by hand (no systemd in CI), log to a file.
if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log/alyx
  nohup dockerd >/var/log/alyx/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
docker info >/dev/null 2>&1 || { echo "provision: dockerd did not start (see /var/log/alyx/dockerd.log)" >&2; exit 1; }

# TypeScript compiler for the generated-client tests, pinned, in a cache folder (no global install).
TSC_VERSION=5.9.3
if [ "$(.cache/ts/node_modules/.bin/tsc --version 2>/dev/null)" != "Version $TSC_VERSION" ]; then
  npm install --prefix .cache/ts --no-audit --no-fund --silent "typescript@$TSC_VERSION" >/dev/null
fi

# Function runtime images, built offline when no registry is reachable; cached, so reruns take seconds.
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -m alyx runtimes build
"$PY" -m alyx image build  # the Alyx server image (tests/test_deploy_docker.py); cached by input hash
echo "provision: PostgreSQL, Redis, chromium, Docker (runtime images), bubblewrap, Go and tsc ready"
