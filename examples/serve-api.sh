#!/usr/bin/env bash
# The `autowrkers serve` API from a shell: list executions, read one and its artifacts, see
# which keys are set, read the budgets, price a template. Start the server first:
#   autowrkers serve --path .
# then run this script (AUTOWRKERS_HOME and the port as the server uses them).
set -euo pipefail
home=${AUTOWRKERS_HOME:-$HOME/.autowrkers}
base=${AUTOWRKERS_URL:-http://127.0.0.1:7878}
token=$(cat "$home/serve.token")
api() { curl -fsS -H "Authorization: Bearer $token" "$@"; }
A=$base/api/workflow

echo "== newest executions"
api "$A/executions?limit=5"
echo
id=$(api "$A/executions?limit=1" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
if [ -n "$id" ]; then
  echo "== execution $id"
  api "$A/executions/$id"
  echo
  echo "== its artifacts"
  api "$A/executions/$id/artifacts"
  echo
fi
echo "== keys (set or not, never their values)"
api "$A/providers/keys/status"
echo
echo "== budgets"
api "$A/budget"
echo
echo "== what the default template would cost for a task"
api -G "$A/cost-estimate" --data-urlencode "task=Add a --verbose flag"
echo
