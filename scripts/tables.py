#!/usr/bin/env python3
"""Our measured tables beside the published ones (Python standard library only).

  tables.py table1 --runs DIR --datasets cifar10,cifar100 --epochs 1,20,100 --seeds N --out DIR
  tables.py table3 --runs DIR --epochs E --seeds N --out DIR
  tables.py table4 --runs DIR --arch A --dataset D --out DIR

Each table cell is a run directory of nd-train: table1 RUNS/<dataset>/<arch>-<norm>-e<E>-s<seed>
(<norm> bn, nd, or ndref: EfficientNet-B0's reference form, nd-train --ref-compat), table3
RUNS/<arch>-<norm>-e<E>-s<seed>, table4 RUNS/b<batch>. The accuracy of a cell is the test top-1
(and top-5) after its last epoch, in summary.csv; its wall time is the sum of the epochs' seconds
(training and test pass), so a resumed run counts only the time it trained. A cell shows `-`
until its run has finished, `failed` when nd-train stopped with an error (FAILED in its
directory) and `k/N seeds` while only some seeds have finished. Writes table<N>.md and
table<N>.csv into --out and prints the markdown. The published numbers are in
scripts/published/ (see its README.md for their sources).
"""
import argparse
import csv
import math
import os
import sys

PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published")

# The ten CIFAR networks in the order of the paper's Table 1, with its names.
TABLE1_NETS = [("vgg16", "VGG-16"), ("resnet18", "ResNet-18"), ("preact18", "PreAct-18"),
               ("densenet121", "DenseNet-121"), ("resnext29_32x4d", "ResNeXt-29"),
               ("mobilenetv2", "MobileNet v2"), ("dpn92", "DPN-92"), ("pnasnetA", "PNASNetA"),
               ("senet18", "SENet-18"), ("efficientnetb0", "EfficientNet")]
# The rows: (arch, name, label of the ND cells, compared with the published numbers). A cell is
# RUNS/<dataset>/<arch>-<label>-e<E>-s<seed>, label bn for the BN column. The paper measured
# EfficientNet-B0 in the reference's form (only the stem deconvolved, the blocks with batch norm:
# nd-train --ref-compat, label ndref); our form with every convolution deconvolved (label nd) is a
# row of its own with no published numbers. Its BN cells are the row above's (batch norm builds
# the same network in both forms), so the CSV holds them once.
TABLE1_ROWS = ([(arch, name, "ndref" if arch == "efficientnetb0" else "nd", True)
                for arch, name in TABLE1_NETS] +
               [("efficientnetb0", "EfficientNet (all deconvolved, ours)", "nd", False)])
# nd-train's flags of each cell label.
TABLE1_FLAGS = {"bn": "--norm bn", "nd": "--norm nd", "ndref": "--norm nd --ref-compat"}
# Parameters of our all-deconvolved EfficientNet-B0 with 10 classes (nd-train --summary), in the
# published tables' units.
ALL_DECONVOLVED_SIZE = "2.89M"  # 2,892,193
TABLE1_EPOCHS = [1, 20, 100]
PUBLISHED_DATASETS = {"cifar10": "c10", "cifar100": "c100"}
TABLE3_ROWS = [("vgg11", "none", "VGG-11 simple"), ("vgg11", "bn", "VGG-11 BN"),
               ("vgg11", "nd", "VGG-11 ND"), ("resnet18", "bn", "ResNet-18 BN"),
               ("resnet18", "nd", "ResNet-18 ND"), ("densenet121", "bn", "DenseNet-121 BN"),
               ("densenet121", "nd", "DenseNet-121 ND")]


def read_tsv(name):
    """Rows of a published table, keyed by the names of its last '#' header line."""
    header, rows = None, []
    with open(os.path.join(PUBLISHED, name)) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                header = line.lstrip("# ").split("\t")
            elif line:
                rows.append(dict(zip(header, line.split("\t"))))
    return rows


def read_run(run_dir, epochs):
    """The state of one run directory: status, top1, top5, seconds, images_per_s."""
    out = {"status": "missing"}
    if os.path.exists(os.path.join(run_dir, "FAILED")):
        return {"status": "failed"}
    summary = os.path.join(run_dir, "summary.csv")
    if not os.path.exists(summary):
        return out
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    rows = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epochs]
    if not rows:
        return out
    if int(rows[-1]["epoch"]) < epochs:
        return {"status": "partial", "epochs_done": int(rows[-1]["epoch"])}
    last = rows[-1]
    return {"status": "done", "top1": float(last["test_top1"]), "top5": float(last["test_top5"]),
            "seconds": sum(float(r["seconds"]) for r in rows),
            "images_per_s": sum(float(r["images_per_s"]) for r in rows) / len(rows)}


def mean_sd(values):
    if not values:
        return None, None
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def collect(run_dirs, epochs):
    """Mean over the seeds' run directories of one cell."""
    runs = [read_run(d, epochs) for d in run_dirs]
    done = [r for r in runs if r["status"] == "done"]
    cell = {"seeds": len(done), "wanted": len(runs)}
    if any(r["status"] == "failed" for r in runs):
        cell["status"] = "failed"
    elif len(done) == len(runs):
        cell["status"] = "done"
    elif done:
        cell["status"] = "partial"
    elif any(r["status"] == "partial" for r in runs):
        cell["status"] = "running"
    else:
        cell["status"] = "missing"
    for key in ("top1", "top5", "seconds", "images_per_s"):
        cell[key], cell[key + "_sd"] = mean_sd([r[key] for r in done])
    return cell


def num(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def signed(v):
    return "-" if v is None else f"{v:+.2f}"


def published_value(table, key):
    if table is None or table.get(key) in (None, "", "-"):
        return None
    return float(table[key])


def ours_text(cell, key="top1"):
    if cell["status"] == "failed":
        return "failed"
    if cell[key] is None:
        return "-"
    text = num(cell[key])
    if cell[key + "_sd"] is not None:
        text += "±" + num(cell[key + "_sd"])
    if cell["status"] == "partial":
        text += f" ({cell['seeds']}/{cell['wanted']} seeds)"
    return text


def bold(cell, key="top1"):
    """Our number in bold; a cell without one as it is."""
    text = ours_text(cell, key)
    return f"**{text}**" if cell[key] is not None else text


def diff(ours, published):
    return None if ours is None or published is None else ours - published


def write_outputs(out_dir, stem, markdown, header, rows):
    os.makedirs(out_dir, exist_ok=True)
    for name, write in ((stem + ".md", lambda f: f.write(markdown)),
                        (stem + ".csv", lambda f: csv.writer(f, lineterminator="\n").writerows(
                            [header] + [["-" if v is None else v for v in r] for r in rows]))):
        path = os.path.join(out_dir, name)
        with open(path + ".tmp", "w", newline="") as f:
            write(f)
        os.replace(path + ".tmp", path)
    sys.stdout.write(markdown)
    print(f"tables.py: wrote {os.path.join(out_dir, stem + '.md')} and .csv", file=sys.stderr)


def csv_number(v, digits=4):
    return None if v is None else round(v, digits)


def table1(a):
    paper = {r["net"]: r for r in read_tsv("cifar_table1_paper.tsv")}
    report = {r["net"]: r for r in read_tsv("cifar_table2_reproduction.tsv")}
    epochs = sorted(set(TABLE1_EPOCHS) | set(a.epochs))
    header = ["dataset", "published_for", "network", "arch", "net_size", "epochs", "norm",
              "nd_train_flags", "status", "seeds", "ours_top1", "ours_top1_sd", "paper", "report",
              "ours_minus_paper", "ours_minus_report", "seconds", "images_per_s"]
    rows = []
    md = ["# Table 1: CIFAR test accuracy (%), batch norm (BN) against deconvolution (ND)", "",
          "Each cell: **ours** / the paper's Table 1 / the reproduction report's Table 2, then "
          "(ours - paper, ours - report). Ours: test top-1 after the last epoch of a run of that "
          f"many epochs (the reference recipe), mean±sd over {a.seeds} seed(s) "
          f"(`{a.runs}`). `-`: not run (yet). EfficientNet: the reference's form of the network "
          "(only the stem deconvolved, its blocks with batch norm: `nd-train --ref-compat`), the "
          "one the published numbers measured; EfficientNet (all deconvolved, ours): every "
          "convolution deconvolved (nd-train's default), published nowhere; its BN cells are the "
          "row above's (batch norm is the same network in both forms).", ""]
    times = []
    for dataset in a.datasets:
        key = PUBLISHED_DATASETS.get(dataset, "c10")
        stand_in = dataset not in PUBLISHED_DATASETS
        title = f"## {dataset}"
        if stand_in:
            title += (" (a stand-in: the published numbers beside it are CIFAR-10's, so the "
                      "differences show the layout, not a comparison)")
        md += [title, "", "| network | size | " +
               " | ".join(f"{n} {e}" for e in epochs for n in ("BN", "ND")) + " |",
               "|---|---|" + "---|" * (2 * len(epochs))]
        times += [f"### {dataset}", "", "| network | " +
                  " | ".join(f"{n} {e}" for e in epochs for n in ("BN", "ND", "ND/BN")) + " |",
                  "|---|" + "---|" * (3 * len(epochs))]
        for arch, name, nd_label, published in TABLE1_ROWS:
            size = paper[arch]["net_size"] if published else ALL_DECONVOLVED_SIZE
            cells, time_cells = [], []
            for e in epochs:
                seconds = {}
                for norm, label in (("bn", "bn"), ("nd", nd_label)):
                    cell = collect([os.path.join(a.runs, dataset, f"{arch}-{label}-e{e}-s{s}")
                                    for s in range(a.seeds)], e)
                    seconds[norm] = cell["seconds"]
                    time_cells.append(num(cell["seconds"], 0))
                    if not published and norm == "bn":  # the row above's cell
                        cells.append("as above")
                        continue
                    pkey = f"{key}_{norm}_{e}"
                    p = published_value(paper.get(arch), pkey) if published else None
                    r = published_value(report.get(arch), pkey) if published else None
                    dp, dr = diff(cell["top1"], p), diff(cell["top1"], r)
                    text = f"{bold(cell)} / {num(p)} / {num(r)}"
                    if dp is not None or dr is not None:
                        text += f" ({signed(dp)}, {signed(dr)})"
                    cells.append(text)
                    rows.append([dataset, "cifar10" if stand_in else dataset, name, arch, size, e,
                                 norm, TABLE1_FLAGS[label], cell["status"], cell["seeds"],
                                 csv_number(cell["top1"]), csv_number(cell["top1_sd"]), p, r,
                                 csv_number(dp), csv_number(dr), csv_number(cell["seconds"], 1),
                                 csv_number(cell["images_per_s"], 1)])
                ratio = (seconds["nd"] / seconds["bn"]
                         if seconds["nd"] is not None and seconds["bn"] else None)
                time_cells.append(num(ratio, 1))
            md.append(f"| {name} | {size} | " + " | ".join(cells) + " |")
            times.append(f"| {name} | " + " | ".join(time_cells) + " |")
        md.append("")
        times.append("")
    md += ["## Wall time per cell (s: training and test passes, mean over seeds)", ""] + times
    write_outputs(a.out, "table1", "\n".join(md), header, rows)


def table3(a):
    published = read_tsv("imagenet_table3.tsv")
    pub = {(r["source"], r["net"], r["norm"]): r for r in published}
    header = ["network", "arch", "norm", "epochs", "status", "seeds", "ours_top1", "ours_top5",
              "paper_top1", "paper_top5", "report_top1", "report_top5", "ours_minus_paper_top1",
              "ours_minus_report_top1", "seconds", "images_per_s"]
    rows = []
    md = ["# Table 3: ImageNet top-1 / top-5 accuracy (%)", "",
          f"Ours: after {a.epochs} epoch(s) on `{a.runs}` ({a.note}), mean over {a.seeds} "
          "seed(s). The paper trained on all of ImageNet for 90 epochs; the reproduction report on "
          "a subset of about 1000 images and fewer classes with batch 128.", "",
          "| network | ours top-1 | ours top-5 | paper top-1 | paper top-5 | report top-1 | "
          "report top-5 | ours - paper (top-1) | ours - report (top-1) | wall time (s) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for arch, norm, name in TABLE3_ROWS:
        cell = collect([os.path.join(a.runs, f"{arch}-{norm}-e{a.epochs}-s{s}")
                        for s in range(a.seeds)], a.epochs)
        p = pub.get(("paper", arch, norm), {})
        r = pub.get(("reproduction", arch, norm), {})
        p1, p5 = published_value(p, "top1"), published_value(p, "top5")
        r1, r5 = published_value(r, "top1"), published_value(r, "top5")
        dp, dr = diff(cell["top1"], p1), diff(cell["top1"], r1)
        md.append(f"| {name} | {bold(cell)} | {bold(cell, 'top5')} | {num(p1)} | "
                  f"{num(p5)} | {num(r1)} | {num(r5)} | {signed(dp)} | {signed(dr)} | "
                  f"{num(cell['seconds'], 0)} |")
        rows.append([name, arch, norm, a.epochs, cell["status"], cell["seeds"],
                     csv_number(cell["top1"]), csv_number(cell["top5"]), p1, p5, r1, r5,
                     csv_number(dp), csv_number(dr), csv_number(cell["seconds"], 1),
                     csv_number(cell["images_per_s"], 1)])
    write_outputs(a.out, "table3", "\n".join(md) + "\n", header, rows)


def table4(a):
    published = read_tsv("sweep_table4.tsv")
    header = ["batch_size", "lr", "eps", "epochs", "status", "ours", "report", "ours_minus_report",
              "seconds"]
    rows = []
    md = ["# Table 4: deconvolution under other batch sizes (accuracy %)", "",
          f"Ours: `{a.arch}` with `--norm nd` on `{a.dataset}` ({a.note}); the report's Table 4 "
          "does not name its network or data set.", "",
          "| batch size | lr | eps | epochs | ours | report | ours - report | wall time (s) |",
          "|---|---|---|---|---|---|---|---|"]
    for p in published:
        cell = collect([os.path.join(a.runs, f"b{p['batch_size']}")], int(p["epochs"]))
        ours, rep = cell["top1"], float(p["accuracy"])
        md.append(f"| {p['batch_size']} | {p['lr']} | {p['eps']} | {p['epochs']} | "
                  f"{bold(cell)} | {num(rep)} | {signed(diff(ours, rep))} | "
                  f"{num(cell['seconds'], 0)} |")
        rows.append([p["batch_size"], p["lr"], p["eps"], p["epochs"], cell["status"],
                     csv_number(ours), rep, csv_number(diff(ours, rep)),
                     csv_number(cell["seconds"], 1)])
    write_outputs(a.out, "table4", "\n".join(md) + "\n", header, rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="table", required=True)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    words = lambda s: [v for v in s.split(",") if v]  # noqa: E731
    t1 = sub.add_parser("table1")
    t1.add_argument("--datasets", type=words, default=["cifar10", "cifar100"])
    t1.add_argument("--epochs", type=ints, default=TABLE1_EPOCHS)
    t3 = sub.add_parser("table3")
    t3.add_argument("--epochs", type=int, default=90)
    t3.add_argument("--note", default="an image folder")
    t4 = sub.add_parser("table4")
    t4.add_argument("--arch", default="resnet18")
    t4.add_argument("--dataset", default="cifar10")
    t4.add_argument("--note", default="the full data set")
    for t in (t1, t3, t4):
        t.add_argument("--runs", required=True)
        t.add_argument("--out", required=True)
        if t is not t4:
            t.add_argument("--seeds", type=int, default=1)
    a = p.parse_args()
    {"table1": table1, "table3": table3, "table4": table4}[a.table](a)


if __name__ == "__main__":
    main()
