#!/usr/bin/env bash
# scripts/table1.sh --quick end to end (the CI smoke run), then the table's layout and numbers:
# all ten networks at 1, 20 and 100 epochs with BN and ND, EfficientNet-B0's ND in the reference's
# form (nd-train --ref-compat) and our all-deconvolved form as an eleventh row, our measured cells
# numeric and every other one "-", the paper's and the report's numbers (scripts/published/)
# beside ours, the differences ours minus published; a second run trains nothing; a table of
# planted runs gives the mean, spread and differences a person computes by hand; a killed cell
# resumes; and figure3.sh draws the quick EfficientNet-B0 cells (BN and both ND forms) without
# training them again.
# Usage: table1_quick_test.sh PATH/TO/nd-train
set -euo pipefail
export ND_TRAIN=$1 CELL_DEVICE=cpu
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$repo"
start=$(date +%s)
bash scripts/table1.sh --quick --runs "$tmp/quick" >"$tmp/table.md" 2>"$tmp/log" ||
  { cat "$tmp/log"; exit 1; }
echo "table1.sh --quick: $(($(date +%s) - start)) s"
python3 - "$tmp/quick" scripts/published <<'PY'
import csv, json, os, sys
runs, published = sys.argv[1], sys.argv[2]
def tsv(name):
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(published, name))]
    header = [r for r in rows if r[0].startswith("#")][-1]
    header[0] = header[0].lstrip("# ")
    return {r[0]: dict(zip(header, r)) for r in rows if not r[0].startswith("#")}
paper, report = tsv("cifar_table1_paper.tsv"), tsv("cifar_table2_reproduction.tsv")
rows = list(csv.DictReader(open(os.path.join(runs, "table1.csv"))))
nets = ["vgg16", "resnet18", "preact18", "densenet121", "resnext29_32x4d", "mobilenetv2",
        "dpn92", "pnasnetA", "senet18", "efficientnetb0"]
assert [r["arch"] for r in rows[:60:6]] == nets, "ten rows in the paper's order"
assert len(rows) == 63, len(rows)
# The eleventh row: EfficientNet-B0 with every convolution deconvolved, ND cells only (its BN
# cells are the reference-form row's), no published numbers.
extra = rows[60:]
assert all(r["arch"] == "efficientnetb0" and r["network"] == "EfficientNet (all deconvolved, ours)"
           and r["norm"] == "nd" and r["nd_train_flags"] == "--norm nd"
           and r["paper"] == r["report"] == "-" for r in extra), extra
assert [r["epochs"] for r in extra] == ["1", "20", "100"], extra
measured = {("efficientnetb0", "--norm bn"), ("efficientnetb0", "--norm nd --ref-compat"),
            ("efficientnetb0", "--norm nd"), ("mobilenetv2", "--norm bn"),
            ("mobilenetv2", "--norm nd")}
for r in rows:
    assert r["dataset"] == "fashion-mnist" and r["published_for"] == "cifar10", r
    ref_form = "--ref-compat" if r["arch"] == "efficientnetb0" and r["norm"] == "nd" else ""
    if r in extra:
        pass
    else:
        assert r["nd_train_flags"] == f"--norm {r['norm']} {ref_form}".strip(), r
        key = f"c10_{r['norm']}_{r['epochs']}"
        assert float(r["paper"]) == float(paper[r["arch"]][key]), (r, paper[r["arch"]][key])
        if r["arch"] == "dpn92":
            assert r["report"] == "-", "the report did not run DPN-92"
        else:
            assert float(r["report"]) == float(report[r["arch"]][key]), r
    if (r["arch"], r["nd_train_flags"]) in measured and r["epochs"] == "1":
        assert r["status"] == "done" and r["seeds"] == "1", r
        ours = float(r["ours_top1"])
        assert 0 <= ours <= 100, r
        if r not in extra:
            assert abs(float(r["ours_minus_paper"]) - (ours - float(r["paper"]))) < 1e-3, r
            assert abs(float(r["ours_minus_report"]) - (ours - float(r["report"]))) < 1e-3, r
        assert float(r["seconds"]) > 0, r
    else:
        assert r["status"] == "missing" and r["ours_top1"] == "-" and r["ours_minus_paper"] == "-", r
# Each EfficientNet-B0 cell ran the form its name says.
for cell, ref_compat in (("bn", False), ("ndref", True), ("nd", False)):
    config = json.load(open(os.path.join(runs, "fashion-mnist", f"efficientnetb0-{cell}-e1-s0",
                                         "config.json")))
    assert config["ref_compat"] is ref_compat and config["norm"] == cell[:2], (cell, config)
md = open(os.path.join(runs, "table1.md")).read()
lines = [l for l in md.splitlines() if l.startswith("| ")]
assert lines[0] == "| network | size | BN 1 | ND 1 | BN 20 | ND 20 | BN 100 | ND 100 |", lines[0]
body = lines[1:12]
assert [l.split(" | ")[0] for l in body] == [
    "| VGG-16", "| ResNet-18", "| PreAct-18", "| DenseNet-121", "| ResNeXt-29", "| MobileNet v2",
    "| DPN-92", "| PNASNetA", "| SENet-18", "| EfficientNet",
    "| EfficientNet (all deconvolved, ours)"], body
assert lines[12].startswith("| network | BN 1 | ND 1 | ND/BN 1 |"), lines[12]  # the time table
# VGG-16, not run: "- / paper / report" in each cell, the paper's 14.12 and 74.18 at 1 epoch.
assert "| VGG-16 | 14.71M | - / 14.12 / 13.61 | - / 74.18 / 50.10 |" in md, body[0]
eff = body[9].split(" | ")
assert eff[2].startswith("**") and " / 35.40 / 38.87 (" in eff[2], eff[2]
assert eff[3].startswith("**") and " / 55.67 / 45.98 (" in eff[3], eff[3]
extra = body[10].split(" | ")
assert extra[2] == "as above" and extra[3].startswith("**") and extra[3].endswith("** / - / -"), extra
assert extra[4:] == ["as above", "- / - / -", "as above", "- / - / - |"], extra
print("table1 --quick: layout and published numbers ok")
PY
cmp -s "$tmp/table.md" "$tmp/quick/table1.md" || { echo "printed table differs from table1.md"; exit 1; }

# A second run finds every cell finished and trains nothing.
bash scripts/table1.sh --quick --runs "$tmp/quick" >/dev/null 2>"$tmp/log2"
[ "$(grep -c 'not run again' "$tmp/log2")" -eq 5 ] || { cat "$tmp/log2"; exit 1; }
if grep -q "^nd-train:" "$tmp/log2"; then echo "the second run trained"; exit 1; fi

# Planted runs on CIFAR-10 (no training): ResNet-18 BN, 1 epoch, seeds 0 and 1 at 50 and 52 %.
for seed in 0 1; do
  d=$tmp/planted/cifar10/resnet18-bn-e1-s$seed
  mkdir -p "$d"
  printf 'epoch,lr,train_loss,train_top1,test_loss,test_top1,test_top5,seconds,images_per_s\n1,0.1,2,20,2,%s,90,%s,10\n' \
    $((50 + 2 * seed)) $((100 + 20 * seed)) >"$d/summary.csv"
done
mkdir -p "$tmp/planted/cifar10/vgg16-nd-e1-s0" && echo "diverged" >"$tmp/planted/cifar10/vgg16-nd-e1-s0/FAILED"
bash scripts/table1.sh --table-only --dataset cifar10 --seeds 2 --runs "$tmp/planted" >/dev/null 2>&1
python3 - "$tmp/planted/table1.csv" <<'PY'
import csv, sys
rows = {(r["arch"], r["norm"], r["epochs"]): r for r in csv.DictReader(open(sys.argv[1]))}
r = rows[("resnet18", "bn", "1")]
assert r["status"] == "done" and r["seeds"] == "2", r
assert float(r["ours_top1"]) == 51.0 and abs(float(r["ours_top1_sd"]) - 2 ** 0.5) < 1e-3, r
assert abs(float(r["ours_minus_paper"]) - (51.0 - 56.25)) < 1e-6, r   # paper 56.25
assert abs(float(r["ours_minus_report"]) - (51.0 - 37.22)) < 1e-6, r  # report 37.22
assert float(r["seconds"]) == 110.0, r
assert rows[("vgg16", "nd", "1")]["status"] == "failed"
assert rows[("resnet18", "nd", "1")]["status"] == "missing"
print("table1 planted runs: mean, sd and differences ok")
PY
grep -q "| ResNet-18 | 11.17M | \*\*51.00±1.41\*\* / 56.25 / 37.22 (-5.25, +13.78) |" "$tmp/planted/table1.md"
grep -q "| VGG-16 | 14.71M | - / 14.12 / 13.61 | failed / 74.18 / 50.10 |" "$tmp/planted/table1.md"

# A killed cell (stopped after epoch 1 of 2) resumes and finishes; nothing else runs.
cell=$tmp/resume/fashion-mnist/efficientnetb0-bn-e2-s0
"$ND_TRAIN" --dataset fashion-mnist --arch efficientnetb0 --norm bn --epochs 2 --stop-after 1 \
  --train-limit 64 --test-limit 50 --batch-size 32 --device cpu --output "$cell" >/dev/null
( source scripts/lib/cells.sh && run_cell "$cell" 2 --never-used-on-resume ) 2>"$tmp/log3"
grep -q "resuming after epoch 1 of 2" "$tmp/log3" || { cat "$tmp/log3"; exit 1; }
[ "$(tail -n 1 "$cell/summary.csv" | cut -d, -f1)" -eq 2 ]

# Figure 3 of the quick cells: they are Table 1's, so nothing trains; EfficientNet-B0 draws BN, ND
# in the reference form and ND all deconvolved.
bash scripts/figure3.sh --quick --epochs 1 --train-limit 512 --test-limit 500 --runs "$tmp/quick" \
  --out "$tmp/fig" >/dev/null 2>"$tmp/log4" || { cat "$tmp/log4"; exit 1; }
[ "$(grep -c 'not run again' "$tmp/log4")" -eq 3 ] || { cat "$tmp/log4"; exit 1; }
png=$tmp/fig/figure3-fashion-mnist-efficientnetb0-e1.png
[ "$(head -c 4 "$png" | od -An -tx1 | tr -d ' ')" = 89504e47 ]  # a PNG
[ "$(grep -c ',test_top1,1,' "${png%.png}.csv")" -eq 3 ] || { cat "${png%.png}.csv"; exit 1; }
grep -q "^BN,test_top1,1," "${png%.png}.csv"
grep -q "^ND (reference form: stem only),test_top1,1," "${png%.png}.csv"
grep -q "^ND (all deconvolved),test_top1,1," "${png%.png}.csv"
echo "table1_quick: ok ($(($(date +%s) - start)) s)"
