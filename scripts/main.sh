#!/usr/bin/env bash
# The main job (sets up .venv first): train a model by name on embedded MNIST (binarized;
# the MNIST sample or scikit-learn's digits stand in, loudly, when the MNIST extra is
# missing), evaluate it on the test split (ELBO and its terms, IWAE-100 NLL in nats,
# bits/dim) and write the report into runs/<model>/: report.json, samples.png,
# curves.png, layer_kl.png, metrics.jsonl, checkpoints/.
#
#   bash scripts/main.sh                     # the VAE: about 2-3 minutes on 2 idle CPU cores
#   bash scripts/main.sh --model hvae        # any registered model (`latentkit list`)
#   bash scripts/main.sh --steps 20000       # a longer run; any `latentkit train` flag
#
# Extra arguments go to `latentkit train` and win over the defaults below.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
# One thread per process unless you say otherwise: these small networks gain little from a
# second thread, and OpenMP threads that spin on a busy machine slow training ten-fold
# (torchrun sets the same default for each of its workers).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m latentkit.cli train --model vae --steps 8000 --batch-size 128 --eval-every 500 \
    --checkpoint-every 1000 --report --overwrite "$@"
