#!/usr/bin/env bash
# End to end: wall time of `make demo`'s pipeline (ingest + model import + train + eval) on the
# sample SOPs in a fresh workspace, per stage and in total. Peak RSS of each stage from GNU time
# when it is installed.
#
#   bash bench/e2e/run.sh        # WS=... to keep the workspace
set -euo pipefail
cd "$(dirname "$0")/../.."
SF=${SF:-.venv/bin/sopforge}
WS=${WS:-$(mktemp -d /tmp/sopforge-e2e.XXXX)}
export SOPFORGE_WORKSPACE=$WS
TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -f %M"
declare -a NAMES SECS RSS
stage() {
  local name=$1; shift
  local t0 rss_file
  rss_file=$(mktemp)
  t0=$(date +%s.%N)
  if [ -n "$TIME" ]; then $TIME -o "$rss_file" "$@"; else "$@"; fi
  NAMES+=("$name"); SECS+=("$(echo "$(date +%s.%N) - $t0" | bc)")
  RSS+=("$( [ -s "$rss_file" ] && echo "$(( $(tail -1 "$rss_file") / 1024 )) MiB" || echo "-")")
  rm -f "$rss_file"
}
stage ingest $SF ingest examples/ --no-progress
stage "models import" $SF models import
stage train $SF train --config configs/train/demo-cpu.yaml
stage eval $SF eval --limit 40
total=0
printf '\n%-14s %10s %12s\n' stage seconds "peak RSS"
for i in "${!NAMES[@]}"; do
  printf '%-14s %10.1f %12s\n' "${NAMES[$i]}" "${SECS[$i]}" "${RSS[$i]}"
  total=$(echo "$total + ${SECS[$i]}" | bc)
done
printf '%-14s %10.1f\n' total "$total"
echo "workspace: $WS"
