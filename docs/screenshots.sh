#!/usr/bin/env bash
# The MLflow UI as a user sees it after a sweep: starts a lean `mlflow server` on
# 127.0.0.1, runs a short digits sweep against it (a learning-rate range wide enough
# that some trials diverge), and takes headless Chromium screenshots of the runs page,
# the parent run's charts, and a pathological trial's diagnostics.png and curves, into docs/.
#
# Usage (after the README's test install): docs/screenshots.sh [TRIALS]
# Needs chromium (Debian: apt-get install chromium). About 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-12}"
py=.venv/bin/python
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  echo "error: chromium not found; install it (Debian: apt-get install chromium)" >&2
  exit 1
fi

work="$(mktemp -d)"
port="$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --workers 1 --host 127.0.0.1 --port "$port" \
  --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" >"$work/server.log" 2>&1 &
server=$!
trap 'kill -- -$server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do
  curl -sf "$url/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$url/health" >/dev/null || { echo "error: mlflow server did not start:" >&2; tail -20 "$work/server.log" >&2; exit 1; }

# digits, 6 epochs, learning rates up to 3: some trials diverge or lose their units.
.venv/bin/descentkit show digits | $py -c '
import sys, yaml
study = yaml.safe_load(sys.stdin)
study.update(name="digits-ui", max_epochs=6)
study["search_space"]["learning_rate"] = {"type": "float", "low": 0.001, "high": 3.0, "log": True}
yaml.safe_dump(study, open(sys.argv[1], "w"))' "$work/digits-ui.yaml"
(cd "$work" && MLFLOW_TRACKING_URI="$url" "$OLDPWD/.venv/bin/descentkit" sweep digits-ui.yaml --trials "$trials" --quiet) \
  | tail -1

# The experiment and a trial the figure explains (pruned for a pathology, else flagged with one).
read -r experiment child < <($py - "$url" <<'EOF'
import sys
from mlflow import MlflowClient

client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("digits-ui")
runs = client.search_runs([experiment.experiment_id], "tags.`descentkit.role` = 'trial'", max_results=1000)
flagged = [r for r in runs if "diagnostics.png" in {a.path for a in client.list_artifacts(r.info.run_id)}]
pick = sorted(flagged, key=lambda r: ("descentkit.prune_reason" not in r.data.tags, r.info.start_time))
print(experiment.experiment_id, pick[0].info.run_id if pick else runs[0].info.run_id)
EOF
)

shoot() {  # shoot FILE URL [MS]: the React UI renders within MS of virtual time (default 20 s);
           # a fresh profile each, since the UI keeps a page's search and view in the browser's storage
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1000 \
    --user-data-dir="$work/browser-$(basename "$1" .png)" \
    --virtual-time-budget="${3:-20000}" --screenshot="$1" "$2" >/dev/null 2>&1
  echo "wrote $1"
}
# workflowType: the UI's GenAI / model-training switch, for the sidebar and breadcrumbs.
ml="workflowType=machine_learning"
shoot docs/mlflow-runs.png "$url/#/experiments/$experiment/runs?$ml"
shoot docs/mlflow-parent-charts.png "$url/#/experiments/$experiment/runs?$ml&compareRunsMode=CHART" 60000
shoot docs/mlflow-child-run.png "$url/#/experiments/$experiment/runs/$child/artifacts/diagnostics.png?$ml"
shoot docs/mlflow-child-metrics.png "$url/#/experiments/$experiment/runs/$child/model-metrics?$ml" 40000
