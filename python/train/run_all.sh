#!/usr/bin/env bash
# Whole recipe, one hour budget on 2 CPU cores. Usage: python/train/run_all.sh --data DIR (or TWEETEVAL_DIR set)
# Stage wall times also land in each metrics JSON; this prints the total.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
export PYTHONWARNINGS=ignore
start=$(date +%s)
$PY train_adapters.py "$@"
$PY train_baselines.py "$@"
$PY train_fusions.py "$@"
end=$(date +%s)
$PY summarize.py --total-s $((end - start))
echo "recipe wall $((end - start))s"
