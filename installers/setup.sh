#!/usr/bin/env bash
# Set LowKey up in ./.venv: torch, the package (core, daemon, native host; MTCNN comes with it as
# a dependency) with its test tools, the default models; then, where Node 20+ is installed, the
# browser extension (extension/dist) and its test tools.
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
echo "[2/4] lowkey, its daemon and their dependencies (facenet-pytorch, aiohttp, keyring;"
echo "      pytest-aiohttp, schemathesis, jsonschema, python-daemon for the tests: pyproject.toml)"
pip install -e ".[dev]"
echo "[3/4] default face-recognition models (verified, converted once, cached)"
.venv/bin/lowkey models fetch
echo "[4/4] the browser extension: npm ci and npm run build in extension/ (needs Node 20+)"
if command -v npm >/dev/null && node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
    if npm ci --prefix extension --no-audit --no-fund --loglevel=error; then
        npm run --prefix extension --silent build
    else
        echo "      npm ci failed: the extension's browser tests will skip (run it again later)"
    fi
else
    echo "      skipped: no Node 20+ here (the extension's packages and its tests need it)"
fi
