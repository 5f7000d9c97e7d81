#!/usr/bin/env python3
"""Training curves of any set of nd-train runs (the paper's Figures 3 and 6).

Draws the training loss of every step (each run's steps.csv, smoothed by a moving average) and
the test top-1 accuracy after every epoch (summary.csv) of each run, against epochs, into one
PNG; the numbers drawn go to the same path with .csv (label, curve, epoch, value).

Usage: scripts/matplotlib.sh scripts/plot_curves.py --run LABEL=DIR [--run LABEL=DIR ...]
         --output FIG.png [--title TEXT] [--panels loss,accuracy] [--smooth STEPS] [--log-loss]
"""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def read_csv(path):
    if not os.path.exists(path):
        sys.exit(f"plot_curves: {path} does not exist (is it an nd-train run directory?)")
    with open(path) as f:
        return list(csv.DictReader(f))


def moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--output", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--panels", default="loss,accuracy")
    p.add_argument("--smooth", type=int, default=0,
                   help="moving-average window in steps (0: about 1/50 of the run)")
    p.add_argument("--log-loss", action="store_true")
    a = p.parse_args()
    panels = [x for x in a.panels.split(",") if x]
    if not panels or any(x not in ("loss", "accuracy") for x in panels):
        sys.exit("plot_curves: --panels takes loss and/or accuracy")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    rows = [["label", "curve", "epoch", "value"]]
    window = 1
    for spec in a.run:
        if "=" not in spec:
            sys.exit(f"plot_curves: --run {spec}: expected LABEL=DIR")
        label, run_dir = spec.split("=", 1)
        steps = read_csv(os.path.join(run_dir, "steps.csv"))
        summary = read_csv(os.path.join(run_dir, "summary.csv"))
        if not steps or not summary:
            sys.exit(f"plot_curves: {run_dir} has no finished epoch yet")
        per_epoch = sum(1 for s in steps if s["epoch"] == "1")
        x = [int(s["step"]) / per_epoch for s in steps]
        loss = [float(s["loss"]) for s in steps]
        window = a.smooth or max(1, len(loss) // 50)
        smooth = moving_average(loss, window)
        rows += [[label, "train_loss_step", f"{e:.4f}", f"{v:.6g}"] for e, v in zip(x, smooth)]
        epochs = [int(r["epoch"]) for r in summary]
        top1 = [float(r["test_top1"]) for r in summary]
        rows += [[label, "test_top1", e, v] for e, v in zip(epochs, top1)]
        if "loss" in axes:
            axes["loss"].plot(x, smooth, label=label)
        if "accuracy" in axes:
            axes["accuracy"].plot(epochs, top1, marker="o", label=label)
    if "loss" in axes:
        ax = axes["loss"]
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss" + (" (log)" if a.log_loss else ""))
        if a.log_loss:
            ax.set_yscale("log")
        ax.set_title("training loss" + (" (every step)" if window == 1 else
                                        f" (moving average of {window} steps)"))
        ax.legend()
    if "accuracy" in axes:
        ax = axes["accuracy"]
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("test accuracy")
        ax.legend()
    if a.title:
        fig.suptitle(a.title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    fig.savefig(a.output, dpi=100)
    data = os.path.splitext(a.output)[0] + ".csv"
    with open(data, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    print(f"plot_curves: {a.output} and {data}")


if __name__ == "__main__":
    main()
