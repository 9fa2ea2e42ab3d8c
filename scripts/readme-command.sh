#!/usr/bin/env bash
# Runs one of the two set-up commands exactly as README.md states them (the lines after
# "# main job" / "# tests" in its first code block), so CI proves the README itself.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:?usage: readme-command.sh main|test}"
marker=$([ "$which" = main ] && echo "# main job" || echo "# tests")
cmd=$(awk -v m="$marker" '$0 == m {getline; print; exit}' README.md)
[ -n "$cmd" ] || { echo "README.md has no '$marker' command" >&2; exit 1; }
echo "+ $cmd"
bash -c "$cmd"
