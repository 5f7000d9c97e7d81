#!/usr/bin/env python3
"""Compare two nd-train run directories: every step's loss (steps.csv) and every tensor of
last.safetensors. Prints the largest differences; exits 0 when both are within the tolerances,
or, with --expect-differ, when the losses differ beyond them (the check must be able to fail).
With --noise DIR_N (a third run of A's configuration that differs from A only in rounding, e.g.
--deconv-path composite), a loss or tensor also passes when its difference from A is at most
--noise-factor times N's: for ill-conditioned deconvolution matrices the engine's own float
noise is the honest tolerance.

Usage: compare_runs.py DIR_A DIR_B [--rtol R] [--atol A] [--expect-differ]
                       [--noise DIR_N [--noise-factor F]]
"""
import argparse
import json
import struct
import sys

FORMATS = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "U8": "B"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        fmt = FORMATS[info["dtype"]]
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        out[name] = struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)
    return out


def read_losses(path):
    with open(path) as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:] if line.strip()]
    return [float(r[3]) for r in rows]


def worst(a, b, rtol, atol, noise=None, factor=4.0):
    """Largest |a-b| / (atol + rtol |b|) over the pairs (> 1 means out of tolerance); with the
    noise run n, min of that and max|a-b| / (factor max|a-n|) over the whole sequence."""
    ratio = max((abs(x - y) / (atol + rtol * abs(y)) for x, y in zip(a, b)), default=0.0)
    if noise is not None:
        floor = factor * max((abs(x - z) for x, z in zip(a, noise)), default=0.0)
        spread = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
        ratio = min(ratio, spread / floor if floor > 0 else float("inf"))
    return ratio


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--expect-differ", action="store_true")
    p.add_argument("--noise")
    p.add_argument("--noise-factor", type=float, default=4.0)
    args = p.parse_args()
    la, lb = read_losses(args.a + "/steps.csv"), read_losses(args.b + "/steps.csv")
    ln = read_losses(args.noise + "/steps.csv") if args.noise else None
    if len(la) != len(lb) or not la:
        sys.exit(f"compare_runs: {len(la)} steps in {args.a} but {len(lb)} in {args.b}")
    loss_ratio = worst(la, lb, args.rtol, args.atol, ln, args.noise_factor)
    print(f"compare_runs: {len(la)} steps, worst loss error {loss_ratio:.3g} x tolerance "
          f"(largest |diff| {max(abs(x - y) for x, y in zip(la, lb)):.3g})")
    if args.expect_differ:
        if loss_ratio <= 1:
            sys.exit("compare_runs: the runs were expected to differ but agree")
        return
    wa = read_safetensors(args.a + "/last.safetensors")
    wb = read_safetensors(args.b + "/last.safetensors")
    if sorted(wa) != sorted(wb):
        sys.exit("compare_runs: the checkpoints hold different tensors")
    wn = read_safetensors(args.noise + "/last.safetensors") if args.noise else {}
    weight_ratio, name = max(
        (worst(wa[k], wb[k], args.rtol, args.atol, wn.get(k), args.noise_factor), k) for k in wa)
    print(f"compare_runs: {len(wa)} tensors, worst weight error {weight_ratio:.3g} x tolerance "
          f"({name})")
    if loss_ratio > 1 or weight_ratio > 1:
        sys.exit("compare_runs: the runs differ beyond the tolerance")


if __name__ == "__main__":
    main()
