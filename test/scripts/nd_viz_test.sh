#!/usr/bin/env bash
# nd-viz on a photograph of python3-skimage, plots included: the four figures are PNG files, and
# summary.csv holds what a person expects of a natural image: its patch correlation matrix far
# from the identity and the deconvolved one close to it, centre-surround kernels (positive centre,
# negative mean neighbour), a more peaked deconvolved histogram (higher kurtosis).
# Usage: nd_viz_test.sh PATH/TO/nd-viz
set -euo pipefail
nd_viz=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
photos=${ND_SKIMAGE_DATA_DIR:-/usr/lib/python3/dist-packages/skimage/data}
[ -f "$photos/coffee.png" ] || { echo "install python3-skimage: $photos/coffee.png missing"; exit 1; }
"$nd_viz" --image "$photos/coffee.png" --size 160 --output "$tmp/out"
for f in 1 2 4 5; do
  [ "$(head -c 4 "$tmp/out/fig$f.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] ||
    { echo "fig$f.png is not a PNG"; exit 1; }
done
value() { grep "^$1," "$tmp/out/summary.csv" | cut -d, -f2; }
awk -v b="$(value offdiag_mean_before)" -v a="$(value offdiag_mean_after)" \
  -v c="$(value kernel_centre_min)" -v s="$(value kernel_surround_max)" \
  -v kb="$(value kurtosis_before)" -v ka="$(value kurtosis_after)" 'BEGIN {
    ok = b > 0.5 && a < 0.05 && c > 0 && s < 0 && ka > kb
    printf "mean |r| off the diagonal %.3f -> %.4f, kernel centre >= %.3g, surround <= %.3g, kurtosis %.2f -> %.2f\n", b, a, c, s, kb, ka
    exit ok ? 0 : 1 }'
# Bad input names the problem.
if "$nd_viz" --image "$tmp/none.png" --output "$tmp/x" 2>"$tmp/err"; then
  echo "nd-viz accepted a missing image"; exit 1
fi
grep -q "does not exist" "$tmp/err"
echo "nd_viz: ok"
