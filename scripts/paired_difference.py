"""Compare two models on the same examples: the mean difference of their bounds, paired.

    latentkit evaluate RUN_A --iwae-k 5000 --eval-limit 2000 --per-example a.safetensors
    latentkit evaluate RUN_B --iwae-k 5000 --eval-limit 2000 --per-example b.safetensors
    python scripts/paired_difference.py a.safetensors b.safetensors

Prints, for the ELBO and (when both files have it) the IWAE bound, A's mean, B's mean and
the mean of A − B over the examples with its standard error (``latentkit.paired_difference``).
NLL = −IWAE, so a positive IWAE difference means A's NLL is lower. Both files must hold the
same number of examples, evaluated in the same order (the same data, split and limit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors import safe_open

import latentkit as lk


def _read(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="evaluate --per-example file of model A")
    ap.add_argument("b", type=Path, help="evaluate --per-example file of model B")
    args = ap.parse_args(argv)
    try:
        (a, meta_a), (b, meta_b) = _read(args.a), _read(args.b)
    except Exception as exc:  # a missing, unreadable or foreign file: one line, no trace
        print(f"error: cannot read the per-example files: {exc}", file=sys.stderr)
        return 2
    for path, tensors in ((args.a, a), (args.b, b)):
        elbo = tensors.get("elbo")
        if elbo is None or elbo.ndim != 1:
            print(f"error: {path} holds no 1-d 'elbo' tensor: not an "
                  "`evaluate --per-example` file", file=sys.stderr)  # fmt: skip
            return 2
    if a["elbo"].shape != b["elbo"].shape:
        print(
            f"error: {args.a} holds {a['elbo'].numel()} examples and {args.b} "
            f"{b['elbo'].numel()}: evaluate both on the same examples",
            file=sys.stderr,
        )
        return 2
    print(f"A: {args.a} ({meta_a.get('source', '?')})")
    print(f"B: {args.b} ({meta_b.get('source', '?')})")
    print(f"{a['elbo'].numel()} examples, paired")
    for name in ("elbo", "iwae"):
        if name not in a or name not in b:
            continue
        label = name.upper() if name == "elbo" else f"IWAE-{meta_a.get('iwae_k', '?')}"
        if name == "iwae" and meta_a.get("iwae_k") != meta_b.get("iwae_k"):
            label += f" (A k={meta_a.get('iwae_k')}, B k={meta_b.get('iwae_k')})"
        d = lk.paired_difference(a[name], b[name])
        print(
            f"{label:>10}: A {a[name].double().mean():.3f}, B {b[name].double().mean():.3f}, "
            f"A − B {d.mean:+.3f} ± {d.stderr:.3f} nats"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
