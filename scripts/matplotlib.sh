#!/usr/bin/env bash
# Runs a Python script with an interpreter that has matplotlib (Debian's python3-matplotlib):
# $ND_PYTHON when set, else the first of python3 and /usr/bin/python3 that imports it.
# Usage: scripts/matplotlib.sh SCRIPT.py [ARGS...]
set -euo pipefail
for python in ${ND_PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$python" >/dev/null && "$python" -c 'import matplotlib' 2>/dev/null; then
    exec "$python" "$@"
  fi
done
echo "matplotlib.sh: no python3 with matplotlib found: apt-get install python3-matplotlib (or set ND_PYTHON)" >&2
exit 1
