#!/usr/bin/env bash
# Quality on the shared corpus: ingest every Markdown and PDF SOP, tune the bundled model on a
# task-balanced subset of the train split, compare base vs tuned on held-out sections.
#
#   bash bench/quality/run.sh          # ~1 h on 2 CPU cores; WS=... EPOCHS=... LIMIT=...
#
# Report: $WS/runs/<id>/report/report.md (and .html with the plots).
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${SF:-.venv/bin/sopforge}
PY=${PY:-.venv/bin/python}
WS=${WS:-$(mktemp -d /tmp/sopforge-quality.XXXX)}
EPOCHS=${EPOCHS:-2}
LIMIT=${LIMIT:-150}
export SOPFORGE_WORKSPACE=$WS
$SF ingest ../shared/corpus/md ../shared/corpus/pdf --no-progress
$SF models import
DS=$(ls -td "$WS"/datasets/*/ | head -1)
# CPU training time is bounded by tokens: every format well represented, open-book (long prompts)
# kept to a share that still teaches the citation form.
$PY bench/quality/subsample.py "$DS" "$WS/subset" \
  --per-task summary=320 json=260 qa=100 steps=60 scenario=40 open_book=30
$SF train --config configs/train/smollm2-cpu.yaml dataset="$WS/subset" sft.num_train_epochs="$EPOCHS"
$SF eval --limit "$LIMIT"
cat "$(ls -td "$WS"/runs/*/ | head -1)report/report.md"
