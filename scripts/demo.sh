#!/usr/bin/env bash
# Set-up command 1: install xsift and run its main job on the embedded default
# (simulate a small CSC-like catalogue and classify it), writing to ./xsift-demo/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup_venv.sh"
cd "$repo"
xsift demo "$@"
