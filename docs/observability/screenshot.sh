#!/usr/bin/env bash
# Makes docs/observability/dashboard.png from a real run: traffic.mjs serving /metrics, Debian's
# Prometheus scraping it (docs/observability/prometheus.yml), and headless Chromium taking a
# picture of Prometheus's graph page. Needs `apt-get install prometheus chromium` and a build.
# Not part of the tests: it only remakes the README's picture.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
DURATION_S=${DURATION_S:-200} node "$here/traffic.mjs" &
prometheus --config.file="$here/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address=127.0.0.1:9090 >"$tmp/prometheus.log" 2>&1 &
sleep "${WAIT_S:-190}" # the picture needs a few minutes of samples; nothing signals "enough"
q() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
url="http://127.0.0.1:9090/graph?g0.expr=$(q 'sum by (pattern, outcome) (rate(hybridbus_messages_sent_total[20s]))')&g0.tab=0&g0.range_input=3m"
url+="&g1.expr=$(q 'histogram_quantile(0.99, sum by (le) (rate(hybridbus_call_duration_seconds_bucket[20s])))')&g1.tab=0&g1.range_input=3m"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1750 \
  --virtual-time-budget=15000 --screenshot="$here/dashboard.png" "$url" 2>/dev/null
echo "wrote $here/dashboard.png"
