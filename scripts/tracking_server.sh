#!/usr/bin/env bash
# A team tracking server on this machine: Debian's PostgreSQL as MLflow's backend store (tracking and
# model registry), artifacts proxied by the server (clients need no storage credentials).
#
#   bash scripts/tracking_server.sh start DIR [PG_PORT] [MLFLOW_PORT]   # prints MLFLOW_TRACKING_URI=...
#   bash scripts/tracking_server.sh stop DIR
#
# Installs postgresql with apt-get when missing (root). Data, logs and pids live under DIR. Binds to
# 127.0.0.1 only; behind a real team set-up put it on a host others reach (deploy/compose.yaml).
set -euo pipefail
cmd=${1:?start|stop}
dir=$(realpath -m "${2:?directory for the database, artifacts and logs}")
pg_port=${3:-55432}
mlflow_port=${4:-5055}
venv_bin=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ]; then
    [ "$(id -u)" = 0 ] || { echo "PostgreSQL is not installed and installing it needs root" >&2; exit 3; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >"$dir/apt.log" 2>&1 \
      || { echo "apt-get install postgresql failed; see $dir/apt.log" >&2; exit 3; }
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$bin"
}

as_postgres() {  # initdb and the server refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir/pg" "$dir/artifacts"
    bin=$(pg_bin)
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir/pg"
    if [ ! -f "$dir/pg/PG_VERSION" ]; then
      as_postgres "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
    fi
    as_postgres "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w \
      -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $dir/pg" start >/dev/null
    as_postgres "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1 \
      || as_postgres "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres mlflow
    store="postgresql+psycopg2://postgres@127.0.0.1:$pg_port/mlflow"
    PATH="$venv_bin:$PATH" nohup mlflow server --backend-store-uri "$store" \
      --artifacts-destination "$dir/artifacts" --serve-artifacts \
      --host 127.0.0.1 --port "$mlflow_port" --workers 2 >"$dir/mlflow.log" 2>&1 &
    echo $! >"$dir/mlflow.pid"
    for _ in $(seq 120); do
      curl -fs "http://127.0.0.1:$mlflow_port/health" >/dev/null 2>&1 && break
      kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || { echo "mlflow server exited; see $dir/mlflow.log" >&2; exit 4; }
      sleep 1
    done
    curl -fs "http://127.0.0.1:$mlflow_port/health" >/dev/null || { echo "mlflow server not ready; see $dir/mlflow.log" >&2; exit 4; }
    echo "MLFLOW_TRACKING_URI=http://127.0.0.1:$mlflow_port"
    echo "backend store: $store"
    ;;
  stop)
    if [ -f "$dir/mlflow.pid" ]; then
      pid=$(cat "$dir/mlflow.pid")
      pkill -TERM -P "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      rm -f "$dir/mlflow.pid"
    fi
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$bin" ] && [ -f "$dir/pg/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null
    ;;
  *) echo "usage: $0 start|stop DIR [PG_PORT] [MLFLOW_PORT]" >&2; exit 2 ;;
esac
