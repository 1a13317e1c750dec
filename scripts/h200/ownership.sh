#!/bin/bash
# Isolation between local tenants on the H200 (issue 11): vgpud gates only channels the driver
# confirms through the tenant's own /dev/nvidiactl; a hostile process naming a victim's
# channels gets none gated; a tenant bound to another uid is refused. Also probes the GR engine
# description for the sim's fixture (rm-trace probe-gr).
# Usage (GPU machine, repository root): scripts/h200/ownership.sh [ARTIFACTS]  (default .h200)
set -u
here=$(cd "$(dirname "$0")" && pwd)
art=$(cd "${1:-$here/../../.h200}" && pwd)
OUT=${OUT:-/tmp/h200-out}; mkdir -p "$OUT"
W=/tmp/h200-own; rm -rf "$W"; mkdir -p "$W"
[ -e /dev/nvidiactl ] || { echo "no /dev/nvidiactl: not a GPU machine"; exit 0; }
date -u +%Y-%m-%dT%H:%M:%SZ | tee "$OUT/ownership.txt"
"$art/rm-trace" probe-gr > "$OUT/gr-probe.json" 2> "$OUT/gr-probe.err"; echo "probe-gr rc=$?" | tee -a "$OUT/ownership.txt"
nvcc -O2 -arch=sm_90 -o "$W/spin" "$here/spin.cu" || exit 1
"$art/vgpud" --backend nvidia --policy "$here/policies/bound.toml" --socket "$W/vgpud.sock" \
  --state "$W/vgpud.state" --stats "$W/stats.json" 2> "$OUT/own-vgpud.log" & vgpud=$!
sleep 1
kill -0 $vgpud 2>/dev/null || { echo "vgpud did not start"; cat "$OUT/own-vgpud.log"; exit 1; }
VGPUD_SOCKET=$W/vgpud.sock VGPU_TENANT=a LD_PRELOAD=$art/librmshim.so "$W/spin" 10 200000 4 a > "$W/a.ticks" 2> "$OUT/own-a.err" &
a=$!
VGPUD_SOCKET=$W/vgpud.sock VGPU_TENANT=b LD_PRELOAD=$art/librmshim.so "$W/spin" 4 200000 4 b > "$W/b.ticks" 2> "$OUT/own-b.err" &
b=$!
sleep 4
echo "state file before the attack:" >> "$OUT/ownership.txt"; cat "$W/vgpud.state" >> "$OUT/ownership.txt"
python3 "$here/hostile_tenant.py" "$W/vgpud.sock" "$W/vgpud.state" >> "$OUT/ownership.txt" 2>&1
echo "state file after the attack:" >> "$OUT/ownership.txt"; cat "$W/vgpud.state" >> "$OUT/ownership.txt"
wait $a; echo "tenant a rc=$? ticks=$(grep -c TICK "$W/a.ticks")" >> "$OUT/ownership.txt"
wait $b; echo "tenant b rc=$? ticks=$(grep -c TICK "$W/b.ticks")" >> "$OUT/ownership.txt"
kill -TERM $vgpud; wait $vgpud
cat "$OUT/ownership.txt"; echo "--- vgpud log"; cat "$OUT/own-vgpud.log"
