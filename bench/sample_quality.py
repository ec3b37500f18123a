"""Cost of the sample-quality metrics, and the reference values of docs/quality.md.

Samples are MNIST training digits, the reference the test digits (the floor's setting), so
the timing is that of real features. Each stage is timed apart: the LeNet features of the
samples, the features, Gaussian and k-NN radii of the reference (computed once per
reference), the FLD (plug-in, then its bootstrap), precision and recall (chunked k-NN
distances: memory bounded by ``CHUNK_ELEMENTS``), the classifier score. Sampling is not
included: a model's sampling time is reported apart by ``draw_samples``.

    python -m bench.sample_quality                          # n = 1,000 and 10,000, 2 threads
    python -m bench.sample_quality --n 10000 --reference-values --json /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

import latentkit as lk
from latentkit.quality import (
    classifier_score,
    frechet_estimate,
    load_feature_network,
    precision_recall,
    prepare_reference,
    reference_values,
)
from latentkit.quality.metrics import CHUNK_ELEMENTS


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def time_metrics(n: int, bootstrap: int, k: int) -> dict[str, float]:
    """Seconds of each stage for n samples against n reference images."""
    data = lk.load_dataset("mnist", variant="unit", limit=max(n, 10_000))
    net = load_feature_network()
    samples, reference = data.train[:n], data.test[:n]
    ref, t_ref = _timed(lambda: prepare_reference(reference, network=net, k=k))
    (feats, logits), t_feat = _timed(lambda: net.features_and_logits(samples))
    _, t_fld = _timed(lambda: frechet_estimate(feats, ref.features, bootstrap=0))
    boot, t_boot = _timed(lambda: frechet_estimate(feats, ref.features, bootstrap=bootstrap))
    (precision, recall), t_pr = _timed(
        lambda: precision_recall(ref.features, feats, k=k, reference_radii=ref.radii)
    )
    _, t_cls = _timed(lambda: classifier_score(logits))
    return {
        "n": n,
        "reference (features, Gaussian, radii)": t_ref,
        "sample features": t_feat,
        "FLD": t_fld,
        f"FLD + bootstrap ({bootstrap})": t_boot,
        f"precision, recall (k={k})": t_pr,
        "classifier score": t_cls,
        "total (reference once + samples)": t_ref + t_feat + t_boot + t_pr + t_cls,
        "fld": boot.value,
        "fld_se": boot.se,
        "precision": precision,
        "recall": recall,
    }


def measured_references(n: int, bootstrap: int, k: int) -> dict[str, dict]:
    """Floor and ceiling at n samples against n test images, for each MNIST variant."""
    out = {}
    for variant in ("binarized", "unit", "8bit"):
        data = lk.load_dataset("mnist", variant=variant, limit=max(n, 10_000))
        rv = reference_values(data.train, data.test[:n], kind=data.kind, k=k, bootstrap=bootstrap)
        out[variant] = rv.to_dict()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=50)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--reference-values", action="store_true", help="also the floor/ceiling")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [time_metrics(n, args.bootstrap, args.k) for n in args.n]
    stages = [key for key in rows[0] if key not in ("n", "fld", "fld_se", "precision", "recall")]
    print(
        f"seconds on {args.threads} thread(s); distances in blocks of {CHUNK_ELEMENTS:,} "
        f"float64 ({CHUNK_ELEMENTS * 8 // 2**20} MiB)\n"
    )
    print("| stage | " + " | ".join(f"n = {r['n']:,}" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for stage in stages:
        print(f"| {stage} | " + " | ".join(f"{r[stage]:.2f}" for r in rows) + " |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"\npeak resident memory {peak:.0f} MiB")
    for r in rows:
        print(
            f"n = {r['n']}: FLD {r['fld']:.3f} ± {r['fld_se']:.3f}, precision "
            f"{r['precision']:.4f}, recall {r['recall']:.4f} (train digits vs test digits)"
        )
    result = {"timings": rows}
    if args.reference_values:
        n = max(args.n)
        refs = measured_references(n, args.bootstrap, args.k)
        result["reference_values"] = refs
        print(f"\nreference values, n = {n} against {n} test images, k = {args.k}:\n")
        print("| data | which | FLD | ± s.e. | precision | recall | classifier score |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for variant, rv in refs.items():
            for which in ("floor", "ceiling"):
                q = rv[which]
                print(
                    f"| {variant} | {which} | {q['fld']:.2f} | {q['fld_se']:.2f} | "
                    f"{q['precision']:.4f} | {q['recall']:.4f} | "
                    f"{q['classifier']['score']:.3f} |"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
