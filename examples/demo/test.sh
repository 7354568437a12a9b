#!/bin/sh
# The demo's test suite: plain sh, so it runs anywhere.
set -e
out=$(sh greet.sh Ada)
[ "$out" = "Hello, Ada!" ] || { echo "FAIL: greeting: $out"; exit 1; }
if grep -q -- '--verbose' greet.sh; then
  out=$(sh greet.sh --verbose Ada)
  echo "$out" | grep -q "greeting Ada" || { echo "FAIL: --verbose prints nothing extra"; exit 1; }
fi
echo "all tests passed"
