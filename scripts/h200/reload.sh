#!/bin/bash
# Live policy reload on the H200: two spin tenants run 18 s under vgpud (with --log) while the
# policy file changes under it, timed from the moment both tenants run:
#   0 s  3:1           (the file vgpud starts with)
#   5 s  1:1           written in place: a file-change reload
#  10 s  weight = 0    written in place: must be refused, 1:1 stays
#  11 s  SIGHUP        file unchanged (still invalid): must be refused again, 1:1 stays
#  12 s  1:3           written, then SIGHUP at once: reload
# Usage (GPU machine, repository root):  scripts/h200/reload.sh [ARTIFACTS]
#                                  or:  scripts/h200/run.sh reload [ARTIFACTS]
# ARTIFACTS holds librmshim.so and vgpud (default .h200, made by scripts/h200/build.sh). Results go
# to $OUT (default /tmp/h200-out): reload.md (tables), reload.jsonl (scheduler log; render it with
# `vgpu-sched log reload.jsonl --svg reload.svg`), reload-vgpud.txt (vgpud's stderr, each line
# prefixed with the Unix time it was read), reload-raw.tar.gz (tick files, event times).
# SPIN=PROGRAM (and VGPUD=PROGRAM) replace the compiled spin tenant (and vgpud) to try the
# script's timing and analysis on a machine without a GPU, with stand-ins printing the same lines.
set -u
here=$(cd "$(dirname "$0")" && pwd)
art=$(cd "${1:-$here/../../.h200}" && pwd) || exit 1
OUT=${OUT:-/tmp/h200-out}; mkdir -p "$OUT"
W=/tmp/h200-reload; rm -rf "$W"; mkdir -p "$W/ticks"
SHIM=$art/librmshim.so; VGPUD=${VGPUD:-$art/vgpud}; SPIN=${SPIN:-}
SECS=${SECS:-18}; ITERS=${ITERS:-200000}; DEPTH=${DEPTH:-4}
T=$W/ticks; POLICY=$W/policy.toml
export LC_ALL=C
[ -e /dev/nvidiactl ] || [ -n "$SPIN" ] || { echo "no /dev/nvidiactl: not a GPU machine, nothing to prove here"; exit 0; }
for f in "$SHIM" "$VGPUD"; do [ -f "$f" ] || { echo "missing $f: run scripts/h200/build.sh first"; exit 1; }; done

if [ -z "$SPIN" ]; then
  { date -u +%Y-%m-%dT%H:%M:%SZ; head -1 /proc/driver/nvidia/version; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } > "$OUT/reload-machine.txt"
  cat "$OUT/reload-machine.txt"
  echo "== compile spin"
  nvcc -O2 -arch=sm_90 -o "$W/spin" "$here/spin.cu" || { echo "compile failed"; exit 1; }
  SPIN=$W/spin
fi

# policy A B: a weighted policy file over tenants a (GFID 1) and b (GFID 2), written in place.
policy() { printf 'policy = "weighted"\ntimeslice = "20ms"\n\n[[tenant]]\nname = "a"\ngfids = [1]\nweight = %s\n\n[[tenant]]\nname = "b"\ngfids = [2]\nweight = %s\n' "$1" "$2" > "$POLICY"; }
event() { echo "$1 $EPOCHREALTIME" >> "$T/reload.events"; echo "== $EPOCHREALTIME $1"; }
# Sleeps until $t0 + $1 seconds.
until_s() { sleep "$(awk -v t0="$t0" -v d="$1" -v now="$EPOCHREALTIME" 'BEGIN { s = t0 + d - now; printf "%.3f", (s > 0 ? s : 0) }')"; }
started() { grep -qs '^START' "$T/reload-a.ticks" && grep -qs '^START' "$T/reload-b.ticks"; }

policy 3 1
# vgpud's stderr, each line stamped with the time it was read (the "driver" line comes just
# before its scheduling clock starts, which places the log's timestamps in wall time).
"$VGPUD" --policy "$POLICY" --socket "$W/vgpud.sock" --state "$W/vgpud.state" --log "$T/reload.jsonl" \
  2> >(while IFS= read -r l; do echo "$EPOCHREALTIME $l"; done > "$T/reload-vgpud.txt") &
daemon=$!
sleep 0.5
kill -0 "$daemon" 2>/dev/null || { sleep 0.2; echo "vgpud did not start:"; cat "$T/reload-vgpud.txt"; exit 1; }
for t in a b; do
  VGPUD_SOCKET=$W/vgpud.sock VGPU_TENANT=$t LD_PRELOAD=$SHIM "$SPIN" "$SECS" "$ITERS" "$DEPTH" "$t" > "$T/reload-$t.ticks" 2>> "$T/reload-tenants.txt" &
done
for _ in $(seq 300); do started && break; sleep 0.1; done
started || { echo "tenants did not start:"; cat "$T/reload-tenants.txt"; kill -TERM "$daemon"; exit 1; }
t0=$EPOCHREALTIME; event both-running
until_s 5;  policy 1 1; event write-1-1
until_s 10; policy 1 0; event write-invalid
until_s 11; kill -HUP "$daemon"; event sighup-invalid
until_s 12; policy 1 3; event write-1-3; kill -HUP "$daemon"; event sighup-1-3
wait $(jobs -p | grep -v "^$daemon$") 2>/dev/null
kill -TERM "$daemon"; wait "$daemon"; sleep 0.2
echo "== vgpud stderr"; cat "$T/reload-vgpud.txt"

echo "== analysis"
python3 "$here/analyze_reload.py" "$T" | tee "$OUT/reload.md"
cp "$T/reload.jsonl" "$OUT/reload.jsonl"; cp "$T/reload-vgpud.txt" "$OUT/reload-vgpud.txt"
tar czf "$OUT/reload-raw.tar.gz" -C "$W" ticks policy.toml
