#!/usr/bin/env python3
"""Draws nd-viz's figures (fig1.png, fig2.png, fig4.png, fig5.png) from the files it wrote.

Fig. 1: heat maps of the patch correlation matrices before and after deconvolution (the whole
patch, pixel-wise within a channel, channel-wise). Fig. 2: the deconvolution kernel tiles
(fig2_kernels.png, written by nd-viz with stb_image_write) with labels. Fig. 4: the four image
panels with their titles. Fig. 5: densities of the standardised values, linear and log.
Run by nd-viz; by hand: scripts/matplotlib.sh scripts/plot_viz.py DIR
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def read_summary(d):
    with open(os.path.join(d, "summary.csv")) as f:
        return {row["key"]: row["value"] for row in csv.DictReader(f)}


def read_matrix(path):
    with open(path) as f:
        return [[float(v) for v in row] for row in csv.reader(f)]


def source_title(s):
    what = "photographs" if s["source"] == "pixels" else s["source"]
    return (f"{what}: {s['images']} image(s) {s['channels']}x{s['height']}x{s['width']}, "
            f"{s['kernel']}x{s['kernel']} patches, {s['deconv_iter']} Newton-Schulz steps")


def fig1(d, s):
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    k, c = int(s["kernel"]), int(s["channels"])
    names = [("corr", f"whole patch ({c * k * k} features)"),
             ("pixel", f"pixel-wise ({k}x{k} taps, mean over channels)"),
             ("channel", f"channel-wise ({c} channels, mean over taps)")]
    for row, when in enumerate(["before", "after"]):
        for col, (stem, label) in enumerate(names):
            ax = axes[row][col]
            m = read_matrix(os.path.join(d, f"fig1_{stem}_{when}.csv"))
            im = ax.imshow(m, cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(f"{label}\n{when} deconvolution", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Fig. 1: correlation of the patches; max |r| off the diagonal "
                 f"{float(s['offdiag_max_before']):.3f} -> {float(s['offdiag_max_after']):.3f}, "
                 f"mean {float(s['offdiag_mean_before']):.3f} -> "
                 f"{float(s['offdiag_mean_after']):.4f}\n{source_title(s)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "fig1.png"), dpi=100)
    plt.close(fig)


def fig2(d, s):
    img = mpimg.imread(os.path.join(d, "fig2_kernels.png"))
    tiles, colour = int(s["kernel_tiles"]), s["kernel_colour_column"] == "1"
    fig, ax = plt.subplots(figsize=(2 + 1.4 * (tiles + colour), 1.2 + 1.4 * tiles))
    ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    height, width = img.shape[0], img.shape[1]
    cols = tiles + (1 if colour else 0)
    labels = (["colour"] if colour else []) + [f"in {i}" for i in range(tiles)]
    for j, lab in enumerate(labels):
        ax.text((j + 0.5) * width / cols, -8, lab, ha="center", fontsize=8)
    for i in range(tiles):
        ax.text(-8, (i + 0.5) * height / tiles, f"kernel {i}", ha="right", va="center", fontsize=8)
    ax.set_title("Fig. 2: deconvolution kernels Cov^-1/2 vec(delta) (blue < 0 < red, per kernel "
                 "scale)\ncentre weight min "
                 f"{float(s['kernel_centre_min']):.3g}, mean surround max "
                 f"{float(s['kernel_surround_max']):.3g}", fontsize=9, pad=18)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "fig2.png"), dpi=100)
    plt.close(fig)


def fig4(d, s):
    panels = [("fig4_input.png", "(a) input"), ("fig4_abs_input.png", "(b) |input - mean|"),
              ("fig4_deconv.png", "(c) deconvolved"), ("fig4_abs_deconv.png", "(d) |deconvolved|")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    for ax, (name, title) in zip(axes, panels):
        img = mpimg.imread(os.path.join(d, name))
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle("Fig. 4: the first image and its deconvolution; " + source_title(s), fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "fig4.png"), dpi=100)
    plt.close(fig)


def fig5(d, s):
    with open(os.path.join(d, "fig5_histogram.csv")) as f:
        rows = [[float(v) for v in r] for r in list(csv.reader(f))[1:]]
    x = [r[0] for r in rows]
    before, after = [r[1] for r in rows], [r[2] for r in rows]
    kb, ka = float(s["kurtosis_before"]), float(s["kurtosis_after"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, log in zip(axes, [False, True]):
        # Empty bins have no logarithm: leave them out of the log plot.
        shown = [[v if v > 0 or not log else float("nan") for v in ys] for ys in (before, after)]
        ax.plot(x, shown[0], label=f"input (kurtosis {kb:.2f})")
        ax.plot(x, shown[1], label=f"deconvolved (kurtosis {ka:.2f})")
        ax.set_xlabel("value / standard deviation")
        ax.set_ylabel("log density" if log else "density")
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("(b) log density" if log else "(a) density")
    fig.suptitle("Fig. 5: values before and after deconvolution; " + source_title(s), fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "fig5.png"), dpi=100)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_viz.py DIR (a folder nd-viz wrote)")
    d = sys.argv[1]
    s = read_summary(d)
    wanted = set(s["figures"].split())
    for number, draw in [("1", fig1), ("2", fig2), ("4", fig4), ("5", fig5)]:
        if number in wanted:
            draw(d, s)
            print(f"plot_viz: {os.path.join(d, 'fig' + number + '.png')}")


if __name__ == "__main__":
    main()
