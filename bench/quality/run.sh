#!/usr/bin/env bash
# Quality on the shared corpus: ingest every Markdown and PDF SOP, tune the bundled model on a
# task-balanced subset of the train split, compare base vs tuned on held-out sections.
#
#   bash bench/quality/run.sh          # ~2.5 h on 2 CPU cores; WS=... EPOCHS=... STEPS=... LIMIT=...
#
# Report: $WS/runs/<id>/report/report.md (and .html with the plots).
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${SF:-.venv/bin/sopforge}
PY=${PY:-.venv/bin/python}
WS=${WS:-$(mktemp -d /tmp/sopforge-quality.XXXX)}
EPOCHS=${EPOCHS:-2}
STEPS=${STEPS:-144}  # 144 x 8 records: ~1.4 epochs of the subset + replay, ~70 min here
LIMIT=${LIMIT:-120}
export SOPFORGE_WORKSPACE=$WS
$SF ingest ../shared/corpus/md ../shared/corpus/pdf --no-progress
$SF models import
DS=$(ls -td "$WS"/datasets/*/ | head -1)
# CPU training time is bounded by tokens: every format well represented, open-book records (long
# prompts: `json` and `open_book`) kept to those under 4,000 characters and to a share that fits.
$PY bench/quality/subsample.py "$DS" "$WS/subset" --max-chars 4000 \
  --per-task summary=260 json=340 qa=60 steps=40 scenario=30 open_book=20
$SF train --config configs/train/smollm2-cpu.yaml dataset="$WS/subset" \
  sft.num_train_epochs="$EPOCHS" sft.max_steps="$STEPS"
# Stage 2 (~36 min): warm-started from stage 1, one epoch on the JSON records (those stage 1 did
# not see first) and a few summaries, at half the learning rate: JSON is the hardest contract for
# a 135M model, and its schema mistakes are what stage 1 leaves.
RUN1=$(ls -td "$WS"/runs/*/ | head -1)
$PY bench/quality/subsample.py "$DS" "$WS/subset2" --max-chars 4000 \
  --per-task json=300 summary=60 --prefer-unseen "$WS/subset"
$SF train --config configs/train/smollm2-cpu.yaml dataset="$WS/subset2" \
  init_adapter="${RUN1}adapter" sft.num_train_epochs=1 sft.max_steps=54 sft.learning_rate=1.0e-4 \
  max_eval_records=64
$SF eval --limit "$LIMIT"
cat "$(ls -td "$WS"/runs/*/ | head -1)report/report.md"
