#!/usr/bin/env bash
# Install LowKey in your browsers (Linux, macOS): sets LowKey up in ./.venv if it is not yet
# (installers/setup.sh), then registers the native-messaging host with Chrome, Chromium, Edge,
# Brave and Firefox and the daemon's start at login.
#   bash installers/install.sh               # for you
#   sudo bash installers/install.sh --system # for all users
#   bash installers/install.sh --dry-run     # print what it would write
# Remove it again: .venv/bin/lowkey uninstall [--system]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/lowkey ]; then
    echo "LowKey is not set up in $(pwd)/.venv yet: running installers/setup.sh first"
    bash installers/setup.sh
fi
exec .venv/bin/lowkey install "$@"
