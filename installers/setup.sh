#!/usr/bin/env bash
# Set LowKey up in ./.venv: torch, the package (core and daemon) with its test tools, MTCNN, the
# default models.
# Safe to run again: everything it does is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${LOWKEY_TORCH:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

echo "[1/4] torch ($TORCH_SPEC)"
# shellcheck disable=SC2086
pip install $TORCH_SPEC
echo "[2/4] lowkey, its daemon and their dependencies (aiohttp, keyring; pytest-aiohttp,"
echo "      schemathesis and jsonschema for the tests: all in pyproject.toml)"
pip install -e ".[dev]"
echo "[3/4] facenet-pytorch (MTCNN face detection; its metadata pins torch<2.3, so --no-deps)"
pip install --no-deps "facenet-pytorch==2.6.0"
echo "[4/4] default face-recognition models (verified, converted once, cached)"
.venv/bin/lowkey models fetch
