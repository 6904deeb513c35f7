#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the project with its pinned dependencies.
# torch is pinned to 2.13.x, which resolves to the CPU wheel on this project's machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,cluster]"
