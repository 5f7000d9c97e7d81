# Shared by the table scripts (source it): one table cell is one nd-train run in its own
# directory. A finished cell (its summary.csv reaches the cell's epoch count) is not run again; a
# killed one (the script stops when a run is killed) continues with nd-train --resume from its
# last checkpoint; a cell that stops with an error (a diverging loss, say) leaves FAILED
# (nd-train's message) in its directory, the script goes on, and later runs skip the cell until
# FAILED is deleted.
#   ND_TRAIN     nd-train binary (default build/bin/nd-train, built when missing)
#   CELL_DEVICE  --device for new and resumed runs (default auto)
#   CELL_NICE    niceness of the runs (default 10: the machine is shared)

ND_TRAIN=${ND_TRAIN:-build/bin/nd-train}
CELL_DEVICE=${CELL_DEVICE:-auto}
CELL_NICE=${CELL_NICE:-10}
cells_failed=0

ensure_nd_train() {
  [ -x "$ND_TRAIN" ] || bash scripts/build.sh >/dev/null
}

# The last epoch summary.csv records (0 when there is none).
cell_epochs() {
  local f=$1/summary.csv
  [ -f "$f" ] && tail -n +2 "$f" | tail -n 1 | cut -d, -f1 | grep -E '^[0-9]+$' || echo 0
}

# run_cell DIR EPOCHS NDTRAIN_FLAGS...: trains DIR for EPOCHS epochs with the flags (not
# --epochs, --output, --device), skipping a finished cell and resuming a killed one.
run_cell() {
  local dir=$1 epochs=$2
  shift 2
  local done
  done=$(cell_epochs "$dir")
  if [ "$done" -ge "$epochs" ]; then
    echo "== $dir: finished ($done epochs), not run again" >&2
    return 0
  fi
  if [ -f "$dir/FAILED" ]; then
    echo "== $dir: failed before (delete $dir/FAILED to try again): $(tail -n 1 "$dir/FAILED")" >&2
    return 0
  fi
  local status=0
  if [ -f "$dir/training_state.safetensors" ] && [ -f "$dir/config.json" ]; then
    echo "== $dir: resuming after epoch $done of $epochs" >&2
    nice -n "$CELL_NICE" "$ND_TRAIN" --resume "$dir" --device "$CELL_DEVICE" >&2 2>"$dir.err" ||
      status=$?
  else
    echo "== $dir: $* --epochs $epochs" >&2
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    nice -n "$CELL_NICE" "$ND_TRAIN" "$@" --epochs "$epochs" --device "$CELL_DEVICE" \
      --output "$dir" >&2 2>"$dir.err" || status=$?
  fi
  if [ "$status" -gt 128 ]; then  # killed by a signal: not the run's fault; resume it later
    cat "$dir.err" >&2
    rm -f "$dir.err"
    echo "== $dir: killed (status $status); run the script again to resume it" >&2
    exit "$status"
  fi
  if [ "$status" -ne 0 ]; then
    mkdir -p "$dir"
    cat "$dir.err" >&2
    mv "$dir.err" "$dir/FAILED"
    cells_failed=$((cells_failed + 1))
    return 0
  fi
  rm -f "$dir.err"
}

# The cells of one network in Table 1 and Figure 3, by their norm label (the <norm> of
# <arch>-<norm>-e<E>-s<seed>): table1_norms ARCH. EfficientNet-B0 has two deconvolution forms:
# "ndref", the reference's (only the stem deconvolved, the blocks keep batch norm: nd-train
# --ref-compat), which the paper's numbers measured, and "nd", ours with every convolution
# deconvolved (nd-train's default). Its batch-norm network is the same in both forms, so it has
# one "bn" cell. Every other network: bn and nd (its nd is the reference's form; --ref-compat
# changes no other network of the table).
table1_norms() {
  case $1 in
    efficientnetb0) echo "bn ndref nd" ;;
    *) echo "bn nd" ;;
  esac
}

# The nd-train flags of a norm label: norm_flags LABEL
norm_flags() {
  case $1 in
    ndref) echo "--norm nd --ref-compat" ;;
    *) echo "--norm $1" ;;
  esac
}

# Comma list -> space list.
words() {
  echo "${1//,/ }"
}

# Exits 1 naming the failed cells, if any: cells_failed_exit SCRIPT_NAME
cells_failed_exit() {
  [ "$cells_failed" -eq 0 ] && return 0
  echo "$1: $cells_failed cell(s) failed (FAILED in their run directories)" >&2
  exit 1
}

# The comment block at the top of a script (its usage): print_usage "$0"
print_usage() {
  sed -n '2,/^set -euo/p' "$1" | sed '$d'
}
