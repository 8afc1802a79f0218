#!/usr/bin/env bash
# Install LowKey the way a Python user does, and check that it works: build the wheel from this
# checkout, `pip install` it into a fresh venv (every dependency from the package index, nothing
# from .venv), then the README's commands: `lowkey models fetch` and `lowkey protect --sample`.
# Also checks that the wheel installs only LowKey's own import names, and that python-daemon
# (import name `daemon`) installs beside it and both import. CI runs this (.ci/run); so does
# `pytest -m slow` (tests/test_install.py). Takes minutes: torch alone is gigabytes.
#   bash installers/check_wheel.sh            # PYTHON=python3.12 to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/lowkey-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "[1/5] the wheel, built from a copy of this checkout's files (no stale build/ folder)"
mkdir "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- . ':!extension' ':!docs' ':!bench' |
        xargs -0 cp --parents -t "$work/src"
else
    cp -r pyproject.toml README.md lowkey daemon native_host installers "$work/src"
fi
"$PYTHON" -m pip wheel --disable-pip-version-check -q --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/lowkey-*.whl)
echo "      $(basename "$wheel")"
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
tops = {name.split("/")[0] for name in zipfile.ZipFile(sys.argv[1]).namelist()}
ours = {"lowkey", "lowkey_daemon", "lowkey_native_host", "lowkey_installers"}
extra = {t for t in tops if t not in ours and not t.endswith((".dist-info", ".data"))}
assert not extra and ours <= tops, f"the wheel's top-level names: {sorted(tops)}"
EOF

echo "[2/5] a fresh venv: pip install the wheel (dependencies from the index)"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --disable-pip-version-check -q "$wheel"
lowkey="$work/venv/bin/lowkey"

echo "[3/5] lowkey models fetch"
"$lowkey" models fetch

echo "[4/5] lowkey protect --sample"
(cd "$work" && "$lowkey" protect --sample)
ls "$work"/lowkey-sample/*_lowkey.* >/dev/null

echo "[5/5] the other commands, and python-daemon beside LowKey"
"$lowkey" daemon --help >/dev/null
"$lowkey" install --dry-run >/dev/null
"$work/venv/bin/python" -m pip install --disable-pip-version-check -q python-daemon
(cd "$work" && "$work/venv/bin/python" -P -c '
import daemon, lowkey_daemon.cli, lowkey_native_host.host, lowkey_installers.cli
assert "site-packages/daemon/" in daemon.__file__ and hasattr(daemon, "DaemonContext")
assert "site-packages/lowkey_daemon/" in lowkey_daemon.cli.__file__
')
echo "the wheel installs and works in a fresh venv"
