#!/usr/bin/env bash
# The main job on embedded data (sets up .venv first). Extra arguments go to the job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
python -m latentkit.quickstart "$@"
