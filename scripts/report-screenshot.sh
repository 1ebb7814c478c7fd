#!/usr/bin/env bash
# Renders a results folder's report.html in headless Chromium (Debian's chromium package) and
# writes a PNG screenshot: scripts/report-screenshot.sh RESULTS_DIR [OUT.png] [WIDTHxHEIGHT]
set -euo pipefail
dir=${1:?usage: report-screenshot.sh RESULTS_DIR [OUT.png] [WIDTHxHEIGHT]}
out=${2:-$dir/report.png}
size=${3:-1280x2600}
html=$(readlink -f "$dir/report.html")
[ -f "$html" ] || { echo "report-screenshot: no report.html in $dir" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "report-screenshot: chromium not found (apt-get install chromium)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${size/x/,}" --screenshot="$(readlink -f "$(dirname "$out")")/$(basename "$out")" \
  "file://$html" >/dev/null 2>&1
[ -s "$out" ] || { echo "report-screenshot: chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
