#!/usr/bin/env bash
# nd-bench-train on the CPU at a tiny size: both norms measured, the JSON line consistent with
# the table (nd_over_bn = the medians' ratio), and the profile attributes the step's time to the
# right kinds (batch norm only with bn, Newton-Schulz and the covariance only with nd, their sum
# within the step time). Usage: bench_train_test.sh BUILD/bin/nd-bench-train
set -euo pipefail
bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bench" --device cpu --nets resnet18 --norm bn,nd --batch 2 --warmup 1 --steps 2 --profile \
  --json "$tmp/out.jsonl" >"$tmp/out.txt"
grep -q "^resnet18 *bn " "$tmp/out.txt" && grep -q "^resnet18 *nd " "$tmp/out.txt" ||
  { cat "$tmp/out.txt"; echo "FAIL: table rows missing"; exit 1; }
python3 - "$tmp/out.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1, lines
j = lines[0]
bn, nd = j["bn"], j["nd"]
assert bn["ok"] and nd["ok"], j
assert abs(j["nd_over_bn"] - nd["median_ms"] / bn["median_ms"]) < 1e-9
for m in (bn, nd):
    assert 0 < m["min_ms"] <= m["median_ms"], m
    p = m["profile"]
    total = sum(v["ms"] for k, v in p.items() if k != "step_ms") / j["steps"]
    assert 0 < total <= p["step_ms"] * 1.02, (total, p["step_ms"])
assert bn["profile"]["batch norm"]["ops"] > 0 and bn["profile"]["Newton-Schulz"]["ops"] == 0
assert nd["profile"]["batch norm"]["ops"] == 0 and nd["profile"]["Newton-Schulz"]["ops"] > 0
assert nd["profile"]["deconv statistics"]["ops"] > 0 and nd["profile"]["fold"]["ops"] > 0
assert bn["profile"]["convolution"]["ops"] == nd["profile"]["convolution"]["ops"]
print("bench_train: all checks passed")
PY
