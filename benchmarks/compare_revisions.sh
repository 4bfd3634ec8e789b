#!/usr/bin/env bash
# The linear curve's two commands (genesel moments, genesel curve) of two revisions, back to
# back on one store and one set of panels: CPU time (user + sys), wall time and peak RSS of
# each, and whether the metrics agree. For refactors that must not change speed or numbers.
#
# Usage: benchmarks/compare_revisions.sh OLD_REV NEW_REV STORE PANEL_ROOT WORKDIR
#   PANEL_ROOT holds <method>/k<K>/seed<S>/panel.tsv (as benchmarks/linear_curve_scale.py writes)
# Each revision runs from its own git worktree (removed at the end) with this checkout's .venv,
# one BLAS thread.
set -euo pipefail
old=$1 new=$2 store=$3 panels=$4 work=$5
repo=$(git rev-parse --show-toplevel)
python=$repo/.venv/bin/python
mapfile -t panel_files < <(find "$panels" -name panel.tsv | sort)
mkdir -p "$work"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rev in "$old" "$new"; do
  tree=$work/tree-$rev
  [[ -d $tree ]] || git -C "$repo" worktree add -q --detach "$tree" "$rev"
  out=$work/$rev
  rm -rf "$out" && mkdir -p "$out"
  for step in moments curve; do
    if [[ $step == moments ]]; then
      args=(moments --data "$store" --out "$out/moments.h5")
    else
      args=(curve --data "$store" --moments "$out/moments.h5" --out "$out/metrics" --panels "${panel_files[@]}")
    fi
    PYTHONPATH=$tree OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
      /usr/bin/time -f "$rev $step cpu_s=%U+%S wall_s=%e max_rss_kb=%M" \
      "$python" -m genesel.cli.main -q "${args[@]}" 2>&1 | grep -E "^$rev $step" | tee -a "$work/times.txt"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for rev in "$old" "$new"; do git -C "$repo" worktree remove --force "$work/tree-$rev"; done
"$python" - "$work/$old/metrics" "$work/$new/metrics" <<'EOF'
import json, sys
from pathlib import Path

old, new = (Path(p) for p in sys.argv[1:3])
worst, n = 0.0, 0
for path in sorted(old.rglob("metrics.json")):
    a = json.loads(path.read_text())
    b = json.loads((new / path.relative_to(old)).read_text())
    for key, value in a.items():
        if isinstance(value, float) and isinstance(b.get(key), float):
            worst = max(worst, abs(value - b[key]) / max(abs(value), 1e-300))
            n += 1
print(f"metrics compared: {n} numbers in {len(list(old.rglob('metrics.json')))} files; largest relative difference {worst:.2e}")
EOF
