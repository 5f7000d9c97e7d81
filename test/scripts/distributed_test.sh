#!/usr/bin/env bash
# Data-parallel nd-train end to end (docs/distributed.md) on 2 CPU ranks:
#  1. 2 ranks x batch b equal 1 process x batch 2b (every step's loss, the final weights) for the
#     batch-norm and deconvolution MLPs (an uneven last batch included) and a deconvolution CNN;
#     with --sync-stats off the deconvolution MLP differs (so the comparison can fail);
#  2. parameters and running buffers end identical on both ranks; only rank 0 writes the run;
#  3. --resume continues a 2-rank run exactly and refuses another number of ranks;
#  4. a rank that fails, or is killed mid-epoch, ends the job with a message within seconds;
#  5. ND_COMM_FORCE=1 takes one process through the same path and changes nothing.
# Usage: distributed_test.sh PATH/TO/nd-train PATH/TO/mpirun
set -euo pipefail
nd_train=$(realpath "$1")
mpirun=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
compare="python3 $repo/test/scripts/compare_runs.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=("$mpirun" -np 2 --oversubscribe)
base=(--dataset fashion-mnist --arch mlp --test-limit 300 --device cpu --workers 1)
mlp=("${base[@]}" --epochs 2 --train-limit 1000)
fail() { echo "distributed_test: FAILED: $*"; exit 1; }

# 1. Equal to the single process with the global batch. 1000 = 15 x 64 + 40: the last global
# batch splits 20 + 20; with --train-limit 1001 it splits 21 + 20 (weighted by share).
for norm in bn nd; do
  "$nd_train" "${mlp[@]}" --norm $norm --batch-size 64 --output "$tmp/one-$norm" > "$tmp/log"
  "${mpi[@]}" "$nd_train" "${mlp[@]}" --norm $norm --batch-size 32 --output "$tmp/two-$norm" \
    > "$tmp/log-two-$norm"
  grep -q "2 ranks x batch 32 = global batch 64" "$tmp/log-two-$norm" || fail "no global batch line"
  $compare "$tmp/one-$norm" "$tmp/two-$norm" || fail "mlp --norm $norm: 2 ranks differ from 1"
  grep -q "parameters identical and running buffers identical on all 2 ranks" \
    "$tmp/log-two-$norm" || fail "mlp --norm $norm: the ranks' states differ"
done
"$nd_train" "${base[@]}" --epochs 2 --norm nd --train-limit 1001 --batch-size 64 \
  --output "$tmp/one-odd" > "$tmp/log"
"${mpi[@]}" "$nd_train" "${base[@]}" --epochs 2 --norm nd --train-limit 1001 --batch-size 32 \
  --output "$tmp/two-odd" > "$tmp/log"
$compare "$tmp/one-odd" "$tmp/two-odd" || fail "uneven last batch: 2 ranks differ from 1"
"${mpi[@]}" "$nd_train" "${mlp[@]}" --norm nd --batch-size 32 --sync-stats off \
  --output "$tmp/two-nd-off" > "$tmp/log-off"
$compare "$tmp/one-nd" "$tmp/two-nd-off" --expect-differ || fail "--sync-stats off changed nothing"

# ND_COMM_FORCE=1: one process through the data-parallel path (MPI, buckets, synchronised
# statistics), as scripts/gpu_check.sh runs it through NCCL on one GPU.
ND_COMM_FORCE=1 "$nd_train" "${mlp[@]}" --norm nd --batch-size 64 --output "$tmp/forced-nd" \
  > "$tmp/log"
grep -q "1 ranks x batch 64" "$tmp/log" || fail "ND_COMM_FORCE=1 did not take the parallel path"
$compare "$tmp/one-nd" "$tmp/forced-nd" || fail "ND_COMM_FORCE=1 differs from the plain run"

python3 "$repo/scripts/fashion_to_cifar.py" --dst "$tmp/cifar" --train-limit 48 --test-limit 16 \
  > /dev/null
# PNASNet-A's 49x49 depthwise deconvolutions are ill-conditioned: the float noise of the engine
# itself (fused against composite path, one process) is the tolerance of the comparison.
cnn=(--dataset cifar10 --data-dir "$tmp/cifar" --arch pnasnetA --norm nd --epochs 1 --lr 0.01
     --device cpu --workers 1)
"$nd_train" "${cnn[@]}" --batch-size 16 --output "$tmp/one-cnn" > "$tmp/log"
"$nd_train" "${cnn[@]}" --batch-size 16 --deconv-path composite --output "$tmp/noise-cnn" \
  > "$tmp/log"
"${mpi[@]}" "$nd_train" "${cnn[@]}" --batch-size 8 --output "$tmp/two-cnn" > "$tmp/log-cnn"
$compare "$tmp/one-cnn" "$tmp/two-cnn" --noise "$tmp/noise-cnn" ||
  fail "pnasnetA --norm nd: 2 ranks differ from 1"
grep -q "parameters identical and running buffers identical" "$tmp/log-cnn" ||
  fail "pnasnetA: the ranks' states differ"

# 2. Only rank 0 writes: each rank runs in its own folder with a relative --output.
mkdir -p "$tmp/rank0" "$tmp/rank1"
"${mpi[@]}" bash -c 'cd "$0/rank$OMPI_COMM_WORLD_RANK" && exec "$@"' "$tmp" "$nd_train" \
  "${base[@]}" --train-limit 1000 --norm bn --epochs 1 --batch-size 32 --output run > "$tmp/log"
for f in config.json summary.csv steps.csv last.safetensors best.safetensors \
  training_state.safetensors; do
  [ -f "$tmp/rank0/run/$f" ] || fail "rank 0 did not write $f"
done
[ ! -e "$tmp/rank1/run" ] || fail "rank 1 wrote a run directory"
[ "$(grep -c 'epoch   1  lr' "$tmp/log")" -eq 1 ] || fail "the epoch line was printed more than once"

# 3. --resume: exact with the same ranks, refused with others.
"${mpi[@]}" "$nd_train" "${mlp[@]}" --norm nd --batch-size 32 --stop-after 1 \
  --output "$tmp/resumed" > "$tmp/log"
"${mpi[@]}" "$nd_train" --resume "$tmp/resumed" > "$tmp/log"
$compare "$tmp/two-nd" "$tmp/resumed" --rtol 0 --atol 1e-12 || fail "2-rank resume is not exact"
"$nd_train" "${mlp[@]}" --norm nd --batch-size 32 --stop-after 1 --output "$tmp/single" > "$tmp/log"
if "${mpi[@]}" "$nd_train" --resume "$tmp/single" > "$tmp/log" 2>&1; then
  fail "a 1-rank run resumed on 2 ranks"
fi
grep -q "trained on 1 rank(s) and this job has 2" "$tmp/log" || fail "no world-size message"

# 4a. A rank that fails stops the job with its message (rank 1 gets a data folder that is not).
start=$(date +%s)
if "$mpirun" --oversubscribe -np 1 "$nd_train" "${mlp[@]}" --norm bn --output "$tmp/f" : \
  -np 1 "$nd_train" "${mlp[@]}" --norm bn --output "$tmp/f" --data-dir "$tmp/none" \
  > "$tmp/log" 2>&1; then
  fail "a failing rank did not fail the job"
fi
grep -q "nd-train (rank 1 of 2): error:" "$tmp/log" || fail "no message from the failing rank"
[ $(($(date +%s) - start)) -lt 30 ] || fail "the job took too long to stop"

# 4b. A rank killed mid-epoch: mpirun ends the others and says which rank died.
"${mpi[@]}" "$nd_train" "${base[@]}" --train-limit 1000 --norm nd --epochs 200 --batch-size 16 \
  --output "$tmp/killed" > "$tmp/log-kill" 2>&1 &
job=$!
for _ in $(seq 1 600); do
  grep -q 'epoch   1  lr' "$tmp/log-kill" && break
  sleep 0.1
done
grep -q 'epoch   1  lr' "$tmp/log-kill" || fail "the job to kill did not start training"
victim=""
for pid in $(pgrep -P "$job" || true) $(pgrep -f "$nd_train" || true); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
    victim=$pid
  fi
done
[ -n "$victim" ] || fail "rank 1 not found"
killed_at=$(date +%s)
kill -9 "$victim"
status=0
wait "$job" || status=$?
elapsed=$(($(date +%s) - killed_at))
[ "$status" -ne 0 ] || fail "the job succeeded although rank 1 was killed"
[ "$elapsed" -lt 15 ] || fail "the job took $elapsed s to end after rank 1 was killed"
grep -q "rank 1 .*exited on signal 9" "$tmp/log-kill" || { cat "$tmp/log-kill"; fail "no message"; }
echo "distributed_test: ok (the killed job ended ${elapsed} s after the kill)"
