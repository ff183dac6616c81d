#!/usr/bin/env bash
# Reproduces the committed sample checkpoints of the quick configuration (about 4 minutes per
# training run on 2 CPU cores). Usage: bash sample_models/make_samples.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/samples}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Dense: AdamW, no group lasso.
mtlexport train --config sample_models/quick.yaml --out "$runs/dense"
# Group-sparse: proximal Adam with coupled groups (one per removable channel) landing on half the
# dense MACs (the controller adapts lambda; dead groups freeze at 75% of training).
mtlexport train --config sample_models/quick.yaml --out "$runs/sparse" \
  --set optimizer.name=proxadam --set optimizer.grouping=coupled --set optimizer.target_macs=0.5

# Drop optimizer and RNG state (not needed to evaluate, slim, export or bench): ~4.6 MB each.
python - "$runs" <<'PY'
import sys
from mtlexport.train.checkpoint import load_checkpoint, save_checkpoint, strip_training_state

runs = sys.argv[1]
for name in ("dense", "sparse"):
    ckpt = load_checkpoint(f"{runs}/{name}/best.pt")
    save_checkpoint(f"sample_models/quick_{name}.pt", strip_training_state(ckpt))
PY
# Slim the sparse one (widths rounded to multiples of 8, see the README).
mtlexport slim sample_models/quick_sparse.pt --out sample_models/quick_sparse.slim.pt --round-to 8
