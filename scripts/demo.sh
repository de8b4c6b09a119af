#!/usr/bin/env bash
# One step from a fresh machine to a real scan: set up, build the bundled sample image from
# this machine's own material (offline), import it into a store under ./sample and scan it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/make_sample_image.py sample/layout
export IMGSCAN_ROOT="$PWD/sample/store"
imgscan pull oci:sample/layout:demo
imgscan images
# The gate: exit 1 when a finding at or above 'high' remains (the sample has some, on purpose).
imgscan scan localhost/layout:demo --format table --format html=sample/report.html \
  --fail-on high || echo "(exit code $?: the gate failed, as it should for this sample)"
echo "HTML audit report: sample/report.html"
