#!/usr/bin/env bash
# Set-up command 2: install xsift with its test extras and run the test suite
# (fast tests only; `scripts/test.sh -m slow` runs the heavy ones).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup_venv.sh" test
cd "$repo"
python -m pytest "$@"
