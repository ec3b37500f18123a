#!/usr/bin/env bash
# Every registered family that models binary data, trained on binarized MNIST under one
# protocol and one budget, then one table (docs/reproduction.md, "Every family on binarized
# MNIST"):
#
#   bash scripts/cross_family.sh                     # the documented runs (two lanes, 1 thread each)
#   STEPS=20 EVAL_LIMIT=20 IWAE_K=5 OUT=/tmp/cf bash scripts/cross_family.sh   # a smoke run
#
# Protocol: dynamic binarization of the training images, the last 10,000 held out for
# validation (the best checkpoint on it is evaluated), the first EVAL_LIMIT test images;
# STEPS steps of 100 for every family (equal epochs: the data budget), each run's wall time
# and threads recorded by the trainer beside its figure. Every network is an MLP with
# (about) the IWAE paper's widths; diffusions get a 512-512 ε-MLP (their one network does
# the work of an encoder and a decoder). The VAE families report −IWAE_k, the diffusions
# −ELBO_T (T = 1000, every layer's KL in closed form) and the continuous model −ELBO_∞ too.
# (The documented runs were made by these commands, the vdm-x run and the reports of the
# two vdm runs started by hand beside them: see docs/reproduction.md.)
# gmm is left out: its Gaussian x | z is a density on R^784, not a probability on {0, 1}^784.
set -euo pipefail
STEPS="${STEPS:-5000}"
EVAL_LIMIT="${EVAL_LIMIT:-500}"
IWAE_K="${IWAE_K:-1000}"
OUT="${OUT:-runs/cross}"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

common=(--data mnist --variant binarized --set data.binarization=dynamic
        --set data.validation=10000 --steps "$STEPS" --batch-size 100 --lr 1e-3
        --set train.lr_schedule=cosine --set train.lr_min_factor=0.1
        --set train.eval_every="$((STEPS / 4))" --set train.eval_examples=1000
        --checkpoint-every "$((STEPS / 4))" --no-progress --overwrite
        --report --eval-limit "$EVAL_LIMIT" --diagnose 0)
vae=(--set latent_dim=50 --set 'hidden=[200, 200]' --set activation=tanh
     --set likelihood=bernoulli)

run() {  # run NAME ARGS...: train + report, logging to OUT/NAME.log
    local name="$1"; shift
    echo "[cross-family] $name: $*"
    /usr/bin/time -v latentkit train --run-dir "$OUT/$name" "${common[@]}" "$@" \
        >"$OUT/$name.log" 2>&1 || { echo "[cross-family] $name FAILED (see $OUT/$name.log)"; return 1; }
}

lane1() {
    run vdm --model vdm --set levels=2 --set network=mlp --set 'hidden=[512, 512]' \
        --set schedule=learned --iwae-k 0
    # the recipe vdm-binarized-mnist's setting: x-prediction, gamma_min = -5 (learned)
    run vdm-x --model vdm --set levels=2 --set network=mlp --set 'hidden=[512, 512]' \
        --set schedule=learned --set gamma_min=-5.0 --set prediction=x --iwae-k 0
    run vdm-x-1024 --model vdm --set levels=2 --set network=mlp --set 'hidden=[1024, 1024]' \
        --set schedule=learned --set gamma_min=-5.0 --set prediction=x --iwae-k 0
    run vae --model vae "${vae[@]}" --iwae-k "$IWAE_K"
    run vamp --model vamp "${vae[@]}" --iwae-k "$IWAE_K"
}
lane2() {
    run ddpm --model ddpm --set levels=2 --set network=mlp --set 'hidden=[512, 512]' --iwae-k 0
    run hvae --model hvae --set 'latent_dims=[100, 50]' \
        --set 'stage_hidden=[[200, 200], [100, 100]]' --set activation=tanh \
        --set likelihood=bernoulli --set posterior=bottom-up --iwae-k "$IWAE_K"
    run iaf --model iaf "${vae[@]}" --iwae-k "$IWAE_K"
    run beta-vae --model beta-vae "${vae[@]}" --iwae-k "$IWAE_K"
}
lane1 & p1=$!
lane2 & p2=$!
wait $p1; wait $p2
latentkit compare "$OUT"/vdm "$OUT"/vdm-x "$OUT"/vdm-x-1024 "$OUT"/ddpm "$OUT"/vae "$OUT"/vamp "$OUT"/hvae "$OUT"/iaf \
    "$OUT"/beta-vae --reference "$OUT"/vae --markdown "$OUT/compare.md" --json "$OUT/compare.json"
