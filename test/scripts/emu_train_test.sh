#!/usr/bin/env bash
# nd-train and nd-infer on --device cuda in the device-emulation build (build-emu/, docs/gpu.md
# "Emulation"), each against the same run on the CPU:
#  1. one Fashion-MNIST MLP epoch per norm: every step's loss and the final weights;
#  2. a few ResNet-18 BN and ND steps on Fashion-MNIST in the CIFAR layout;
#  3. nd-infer on the twenty CIFAR networks (BN and ND), eval and train mode, on the same weights
#     and input;
#  4. two ranks through the emulator's NCCL (mpirun -np 2) against one rank.
# Tolerances: float32 sums in another order (our kernels, the stand-in libraries in double)
# against the CPU's; for the CNN, where batch statistics of a batch of 4 amplify rounding, four
# times the CPU's own spread between two of its implementations (compare_runs.py --noise).
# Usage: emu_train_test.sh BUILD_DIR/bin [mpirun]   (ND_EMU_TEST_NETS="a b": only those in 3)
set -euo pipefail
bin=$(realpath "$1")
mpirun=${2:-}
repo=$(cd "$(dirname "$0")/../.." && pwd)
compare="python3 $repo/test/scripts/compare_runs.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "emu_train_test: FAILED: $*"; exit 1; }
passed=0
ok() { passed=$((passed + 1)); echo "emu_train_test: ok: $*"; }

# 1. MLP epochs (2000 images, so the run is short; the whole epoch runs on the device).
mlp=(--dataset fashion-mnist --arch mlp --epochs 1 --train-limit 2000 --test-limit 500
     --workers 1)
for norm in bn nd; do
  "$bin/nd-train" "${mlp[@]}" --norm $norm --device cpu --output "$tmp/mlp-$norm-cpu" > "$tmp/log"
  "$bin/nd-train" "${mlp[@]}" --norm $norm --device cuda --output "$tmp/mlp-$norm-cuda" \
    > "$tmp/log-cuda" || { cat "$tmp/log-cuda"; fail "mlp --norm $norm on cuda"; }
  $compare "$tmp/mlp-$norm-cpu" "$tmp/mlp-$norm-cuda" --rtol 1e-3 --atol 1e-4 ||
    fail "mlp --norm $norm: cuda differs from cpu"
  ok "mlp --norm $norm: cuda equals cpu"
done

# 2. ResNet-18 steps on Fashion-MNIST written as CIFAR-10 binaries.
python3 "$repo/scripts/fashion_to_cifar.py" --dst "$tmp/cifar" --train-limit 20 --test-limit 8 \
  > /dev/null
cnn=(--dataset cifar10 --data-dir "$tmp/cifar" --arch resnet18 --epochs 1 --batch-size 4
     --train-limit 16 --lr 0.01 --workers 1)
for norm in bn nd; do
  "$bin/nd-train" "${cnn[@]}" --norm $norm --device cpu --output "$tmp/r18-$norm-cpu" > "$tmp/log"
  # Another correct float32 implementation on the CPU (im2col + GEMM convolutions, and the
  # composite deconvolution path): BN at batch 4 amplifies rounding, so the spread between the
  # CPU's own implementations is the honest tolerance.
  ND_CPU_CONV=ref "$bin/nd-train" "${cnn[@]}" --norm $norm --device cpu --deconv-path composite \
    --output "$tmp/r18-$norm-noise" > "$tmp/log"
  "$bin/nd-train" "${cnn[@]}" --norm $norm --device cuda --output "$tmp/r18-$norm-cuda" \
    > "$tmp/log-cuda" || { cat "$tmp/log-cuda"; fail "resnet18 --norm $norm on cuda"; }
  $compare "$tmp/r18-$norm-cpu" "$tmp/r18-$norm-cuda" --rtol 1e-3 --atol 1e-4 \
    --noise "$tmp/r18-$norm-noise" || fail "resnet18 --norm $norm: cuda differs from cpu"
  ok "resnet18 --norm $norm: 4 steps, cuda equals cpu"
done

# 3. nd-infer: the weights of one CPU step of each network at a tiny learning rate (so the
# running statistics have moved from their initial values but the weights have not: one step
# at lr 0.1 sends EfficientNet-B0 ND's eval activations past float32's range on any device, and
# its ReLUs turn the overflow's NaNs into zeros), one input, eval and train mode. Tolerance: 4
# times the largest spread between the CPU run and two other CPU runs (reference loops instead of
# oneDNN and BLAS; one thread instead of all) plus 1e-4 of the logits' scale; logits past 1e30
# make the comparison meaningless and fail it.
python3 - "$tmp/input.safetensors" <<'PY'
import json, random, struct, sys
random.seed(5)
shape = [2, 3, 32, 32]
values = [random.gauss(0, 1) for _ in range(2 * 3 * 32 * 32)]
raw = struct.pack("<%df" % len(values), *values)
header = json.dumps({"input": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(raw)]}})
header += " " * (-len(header) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header.encode() + raw)
PY
nets=${ND_EMU_TEST_NETS:-vgg16 resnet18 preact18 densenet121 resnext29_32x4d mobilenetv2 dpn92
                          pnasnetA senet18 efficientnetb0}
# One network and norm: its weights, then eval and train mode. The networks run two at a time
# (each process leaves a core idle much of the time); each writes its own folder and log.
check_infer() {
  local arch=$1 norm=$2 out=$tmp/infer-$1-$2 run=$tmp/w-$1-$2 mode flag infer
  mkdir -p "$out"
  "$bin/nd-train" --dataset cifar10 --data-dir "$tmp/cifar" --arch $arch --norm $norm \
    --epochs 1 --train-limit 2 --test-limit 2 --batch-size 2 --lr 1e-6 --device cpu \
    --workers 1 --output "$run" > "$out/log" || { cat "$out/log"; fail "$arch --norm $norm: no weights"; }
  for mode in eval train; do
    flag=(); [ $mode = train ] && flag=(--train-mode)
    infer=("$bin/nd-infer" --arch $arch --norm $norm --classes 10 --input "$tmp/input.safetensors"
           --weights "$run/last.safetensors" "${flag[@]}")
    "${infer[@]}" --device cpu --output "$out/y-cpu.safetensors" > "$out/log-infer" 2>&1 &&
      ND_CPU_CONV=ref ND_CPU_DECONV=ref "${infer[@]}" --device cpu \
        --output "$out/y-ref.safetensors" >> "$out/log-infer" 2>&1 &&
      OMP_NUM_THREADS=1 "${infer[@]}" --device cpu --output "$out/y-one.safetensors" \
        >> "$out/log-infer" 2>&1 &&
      "${infer[@]}" --device cuda --output "$out/y-cuda.safetensors" >> "$out/log-infer" 2>&1 ||
      { cat "$out/log-infer"; fail "nd-infer $arch --norm $norm ($mode)"; }
    python3 - "$out" "$arch $norm $mode" <<'PY' ||
import json, struct, sys
def logits(name):
    data = open(f"{sys.argv[1]}/y-{name}.safetensors", "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    info = json.loads(data[8:8 + n])["logits"]
    b, e = info["data_offsets"]
    raw = data[8 + n + b:8 + n + e]
    return struct.unpack("<%df" % (len(raw) // 4), raw)
cpu, cuda = logits("cpu"), logits("cuda")
scale = max(abs(v) for v in cpu)
if not scale < 1e30:
    sys.exit(f"emu_train_test: nd-infer {sys.argv[2]}: cpu logits up to {scale:.3g} (overflowing)")
err = max(abs(x - y) for x, y in zip(cuda, cpu))
spread = max(abs(x - y) for other in ("ref", "one") for x, y in zip(logits(other), cpu))
bound = 1e-4 * scale + 4 * spread
print(f"emu_train_test: nd-infer {sys.argv[2]}: max |cuda - cpu| {err:.3g}, cpu spread "
      f"{spread:.3g}, logits up to {scale:.3g}: {err / bound:.3g} x tolerance")
sys.exit(0 if err <= bound else 1)
PY
      fail "nd-infer $arch --norm $norm ($mode): cuda differs from cpu"
  done
}
export -f check_infer fail
export bin tmp
for arch in $nets; do for norm in bn nd; do echo "$arch $norm"; done; done |
  xargs -P "${ND_EMU_JOBS:-2}" -L 1 bash -c 'check_infer "$0" "$1" > "$tmp/infer-$0-$1.log" 2>&1' ||
  infer_failed=1
for arch in $nets; do for norm in bn nd; do cat "$tmp/infer-$arch-$norm.log"; done; done
[ -z "${infer_failed:-}" ] || fail "nd-infer: a network above differs or failed"
ok "nd-infer: $(echo $nets | wc -w) networks x BN/ND x eval/train, cuda equals cpu"

# 4. Two ranks through the emulator's NCCL against one rank with the global batch.
if [ -n "$mpirun" ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  two=(--dataset fashion-mnist --arch mlp --norm nd --epochs 1 --train-limit 1000 --test-limit 200
       --workers 1 --device cuda)
  "$bin/nd-train" "${two[@]}" --batch-size 64 --output "$tmp/nccl-one" > "$tmp/log"
  "$mpirun" -np 2 --oversubscribe "$bin/nd-train" "${two[@]}" --batch-size 32 \
    --output "$tmp/nccl-two" > "$tmp/log-two" || { cat "$tmp/log-two"; fail "2 ranks on cuda"; }
  grep -q "2 ranks x batch 32" "$tmp/log-two" || fail "the 2-rank run did not take 2 ranks"
  $compare "$tmp/nccl-one" "$tmp/nccl-two" || fail "2 NCCL ranks differ from 1"
  ok "mlp --norm nd: 2 ranks through NCCL equal 1 rank"
fi
echo "emu_train_test: $passed passed, 0 failed"
