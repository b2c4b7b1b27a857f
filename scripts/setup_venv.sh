#!/usr/bin/env bash
# Create (once) the project's virtual environment and install xsift into it.
# Usage: source scripts/setup_venv.sh [EXTRAS]     e.g. EXTRAS=test
# The environment lives in $XSIFT_VENV (default: .venv beside this repository's pyproject.toml).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${XSIFT_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "xsift: creating virtual environment $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
spec="$repo"
[ -n "${1:-}" ] && spec="$repo[$1]"
echo "xsift: installing $spec into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
export PATH="$venv/bin:$PATH"
