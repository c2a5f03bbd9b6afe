#!/usr/bin/env bash
# Cold-process wall time of `heron query` (warm page cache): the median of 5 runs after one discarded.
#   bash bench/query_cold.sh TREE INDEX [heron query options...]
# TREE: a heron checkout whose src/ is put first on PYTHONPATH (compare two commits with two worktrees);
# INDEX: an index or bundle directory. Uses this checkout's .venv.
set -euo pipefail
tree=$1; index=$2; shift 2
python=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
times=()
for i in 1 2 3 4 5 6; do
  start=$(date +%s.%N)
  PYTHONPATH=$tree/src "$python" -m heron query --index "$index" -k 5 "$@" "does vitamin d prevent cancer" >/dev/null
  end=$(date +%s.%N)
  [[ $i -gt 1 ]] && times+=("$(echo "$end - $start" | bc)")
done
printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
