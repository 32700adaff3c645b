#!/usr/bin/env bash
# Change one fact in a real procedure and watch the assistant follow it (issue 5's walk-through).
#
#   bash bench/stale/run.sh            # ~1 h on 2 CPU cores; WS=... to keep the workspace
#                                      # STEPS=40 (version 1's run) RETRAIN_STEPS=80
#
# The document is dxw's "Dealing with an incident" from ../shared/corpus (real, public). The fact
# (section "When to stop"): "If an out of hours incident has taken more than two hours, you should
# stop"; version 2 says four hours. (Until 2026-12-02 the walk-through changed "30 minutes" in "Out of
# hours alerts", a section the split holds out for evaluation: retraining never saw it, and the model
# answered with the "two hours" it had learnt here.) The bundled SmolLM2-135M-Instruct is tuned on
# version 1, then `sopforge retrain` tunes on version 2, evaluates against the promoted model, asks the
# stale-procedure probes and promotes (the changed section's records weighted x4, the default
# --changed-weight: 2026-12-02 the probe passed, the gate promoted, the chat said "four hours").
# `sopforge ask` shows the chat's answer and its sources.
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${SF:-.venv/bin/sopforge}
WS=${WS:-$(mktemp -d /tmp/sopforge-stale.XXXX)}
DOC=../shared/corpus/md/dxw_dealing_with_an_incident.md
V2=$(mktemp -d /tmp/sopforge-v2.XXXX)
QUESTION="How long should I keep working on an out of hours incident before I stop?"
STEPS=${STEPS:-40}
# The retrain sees each record of the document ~2 times: 40 steps (~1 epoch) left the new number
# out of the answers (2026-11-21 run: the probe found the new number in neither model's answer).
RETRAIN_STEPS=${RETRAIN_STEPS:-80}
export SOPFORGE_WORKSPACE=$WS
echo "workspace: $WS"
t0=$(date +%s)

echo "== 1. version 1: ingest, import the bundled model, tune, promote"
$SF ingest "$DOC" --no-progress
$SF models import
$SF train --config configs/train/demo-cpu.yaml sft.max_steps="$STEPS"
$SF models promote latest --force --reason "walk-through: first model"
$SF ask "$QUESTION" --user walkthrough || true

echo "== 2. version 2: the same document with one fact changed (two -> four hours)"
sed 's/has taken more than two hours/has taken more than four hours/' "$DOC" > "$V2/$(basename "$DOC")"
diff "$DOC" "$V2/$(basename "$DOC")" || true
$SF ingest "$V2/$(basename "$DOC")" --no-progress

echo "== 3. retrain: warm start from the promoted adapter, gate, stale probes"
$SF retrain --config configs/train/demo-cpu.yaml --limit 24 sft.max_steps="$RETRAIN_STEPS" || true
cat "$(ls -td "$WS"/runs/*/ | head -1)retrain.md"

echo "== 4. the chat now"
$SF ask "$QUESTION" --user walkthrough || true
$SF models list
echo "walk-through took $(( $(date +%s) - t0 )) s; workspace kept at $WS"
