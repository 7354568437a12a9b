#!/bin/sh
# Runs the offline demo: copies examples/demo to a temporary git repository and runs the whole
# pipeline there with the scripted provider ($0, no network, no keys).
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cp -R "$here/examples/demo/." "$work/"
git -C "$work" init -q
git -C "$work" add -A
git -C "$work" -c user.name=demo -c user.email=demo@localhost commit -qm "demo project"
export AUTOWRKERS_HOME="${AUTOWRKERS_HOME:-$work/.home}"
cd "$here"
cargo run --quiet --release -- run --path "$work" --task "Add a --verbose flag" \
  --template examples/templates/demo-scripted.yaml "$@"
echo "demo project: $work"
