#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment; sourced by main.sh and test.sh.
# Installs a CPU build of torch first when none is present, so a fresh machine never
# pulls a multi-GB CUDA build; pyproject.toml itself keeps an ordinary torch range.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LATENTKIT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_CPU_VERSION="${LATENTKIT_TORCH:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp="$VENV/.latentkit-stamp"
want="$(cat "$ROOT"/pyproject.toml "$ROOT"/plugins/*/pyproject.toml "$ROOT"/docs/examples/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0 2>/dev/null || exit 0
fi

if ! python -c "import torch" 2>/dev/null; then
    echo "[bootstrap] installing torch ${TORCH_CPU_VERSION} (CPU build)"
    python -m pip install -q "torch==${TORCH_CPU_VERSION}" \
        || python -m pip install -q "torch==${TORCH_CPU_VERSION}" --index-url https://download.pytorch.org/whl/cpu
fi
echo "[bootstrap] installing latentkit and its plugins (editable)"
args=(-e "$ROOT[test]")
for p in "$ROOT"/plugins/*/ "$ROOT"/docs/examples/*/; do
    [ -f "$p/pyproject.toml" ] && args+=(-e "$p")
done
python -m pip install -q "${args[@]}" 2>&1 | grep -v -e "^WARNING: Location" -e "^$" || true
python -c "import latentkit, torch; print('[bootstrap] latentkit', latentkit.__version__, '| torch', torch.__version__)"
echo "$want" > "$stamp"
