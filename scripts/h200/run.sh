#!/bin/bash
# The H200 proof: unmodified CUDA programs through librmshim.so, then 2 and 3 spin tenants with
# and without vgpud's channel gating, the interposer's cost per escape, and kill tests.
# Usage (on the GPU machine, from the repository root):  scripts/h200/run.sh [ARTIFACTS]
#   or, for the live policy reload case alone:            scripts/h200/run.sh reload [ARTIFACTS]
# ARTIFACTS holds librmshim.so and vgpud (default .h200, made by scripts/h200/build.sh).
# Results go to $OUT (default /tmp/h200-out): results.md (tables), log.txt, raw tick files.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ "${1:-}" = reload ] && { shift; exec "$here/reload.sh" "$@"; }
art=$(cd "${1:-$here/../../.h200}" && pwd)
OUT=${OUT:-/tmp/h200-out}; mkdir -p "$OUT"
W=/tmp/h200-work; rm -rf "$W"; mkdir -p "$W/ticks"
SHIM=$art/librmshim.so; VGPUD=$art/vgpud
SECS=${SECS:-12}; ITERS=${ITERS:-200000}; DEPTH=${DEPTH:-4}
log() { echo "== $*" | tee -a "$OUT/log.txt"; }
[ -e /dev/nvidiactl ] || { echo "no /dev/nvidiactl: not a GPU machine, nothing to prove here"; exit 0; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; head -1 /proc/driver/nvidia/version; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } > "$OUT/machine.txt"
cat "$OUT/machine.txt"

log "compile"
nvcc -O2 -arch=sm_90 -o "$W/spin" "$here/spin.cu" && nvcc -O2 -arch=sm_90 -o "$W/vecadd" "$here/vecadd.cu" \
  && gcc -O2 -o "$W/escbench" "$here/escbench.c" || { echo "compile failed"; exit 1; }

shim() { RMSHIM_STATS=1 LD_PRELOAD=$SHIM "$@"; }
check() { local name=$1; shift; if "$@" > "$W/$name.out" 2> "$W/$name.err"; then echo "PROGRAM $name ok"; else echo "PROGRAM $name FAILED rc=$?"; fi | tee -a "$OUT/log.txt" "$W/programs.txt"; tail -n 3 "$W/$name.out" "$W/$name.err" | tee -a "$OUT/log.txt"; }

log "programs through the interposer"
check vecadd shim "$W/vecadd"
check spin shim "$W/spin" 2 "$ITERS" "$DEPTH" probe
nvidia-smi -q > "$W/smiq-native.txt" 2>&1
check smiq shim nvidia-smi -q
# Same report both ways, apart from lines that change between two calls (times, clocks, power, utilisation).
volatile='Throughput|Timestamp|Time|Clocks|MHz|W$|%|Temp|Performance State|Process|Used|Free|Reserved|Throttle|Event|Fan|Power'
if diff <(grep -Ev "$volatile" "$W/smiq-native.txt") <(grep -Ev "$volatile" "$W/smiq.out") > "$W/smiq.diff"; then
  echo "PROGRAM smiq-matches-native ok ($(wc -l < "$W/smiq.out") lines)" | tee -a "$OUT/log.txt" "$W/programs.txt"
else echo "PROGRAM smiq-matches-native DIFFERS" | tee -a "$OUT/log.txt" "$W/programs.txt"; fi
check matmul shim python3 "$here/matmul.py"

log "per-escape cost"
for i in 1 2 3; do "$W/escbench" native; shim "$W/escbench" shim; done 2>&1 | tee -a "$OUT/log.txt" > "$W/escbench.txt"

# run_case NAME POLICY|none TENANTS... : tenants start together, SECS seconds each.
daemon_pid=
start_daemon() { "$VGPUD" --backend nvidia --policy "$1" --socket "$W/vgpud.sock" --state "$W/vgpud.state" --stats "$2" 2>> "$OUT/vgpud.log" & daemon_pid=$!; sleep 0.5; }
stop_daemon() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null; daemon_pid=; }
tenant() { VGPUD_SOCKET=$W/vgpud.sock VGPU_TENANT=$1 LD_PRELOAD=$SHIM "$W/spin" "$SECS" "$ITERS" "$DEPTH" "$1" > "$W/ticks/$case-$1.ticks" 2>> "$OUT/tenants.log" & }
run_case() {
  case=$1; local policy=$2; shift 2
  log "case $case ($policy: $*)"
  [ "$policy" != none ] && start_daemon "$here/policies/$policy.toml" "$W/ticks/$case.vgpud.json"
  for t in "$@"; do tenant "$t"; done
  wait $(jobs -p | grep -v "^${daemon_pid:-x}$") 2>/dev/null
  stop_daemon
}
run_native() { case=$1; log "case $case (native, no interposer)"; "$W/spin" "$SECS" "$ITERS" "$DEPTH" a > "$W/ticks/$case-a.ticks"; }

run_native solo-native
run_case solo none a
run_case pair-free none a b
run_case trio-free none a b c
run_case pair-1-1 w1-1 a b
run_case pair-3-1 w3-1 a b
run_case trio-1-2-3 w1-2-3 a b c

log "kill test 1: SIGKILL vgpud mid-window (9:1), tenants re-enable themselves; a new vgpud takes over at +3 s"
case=kill-shim; SECS=14
start_daemon "$here/policies/w9-1.toml" "$W/ticks/$case.vgpud.json"
tenant a; tenant b; sleep 5; date +%s.%N > "$W/ticks/$case.killed"; kill -KILL "$daemon_pid"; daemon_pid=
sleep 3; date +%s.%N > "$W/ticks/$case.restarted"; start_daemon "$here/policies/w9-1.toml" "$W/ticks/$case.vgpud2.json"
wait $(jobs -p | grep -v "^$daemon_pid$") 2>/dev/null; stop_daemon

log "kill test 2: same, tenants told not to re-enable (RMSHIM_NO_REENABLE): the restarted vgpud must"
case=kill-daemon
start_daemon "$here/policies/w9-1.toml" "$W/ticks/$case.vgpud.json"
RMSHIM_NO_REENABLE=1 tenant a; RMSHIM_NO_REENABLE=1 tenant b; sleep 5; date +%s.%N > "$W/ticks/$case.killed"; kill -KILL "$daemon_pid"; daemon_pid=
sleep 3; date +%s.%N > "$W/ticks/$case.restarted"; start_daemon "$here/policies/w9-1.toml" "$W/ticks/$case.vgpud2.json"
wait $(jobs -p | grep -v "^$daemon_pid$") 2>/dev/null; stop_daemon

log "kill test 3: SIGKILL a tenant mid-run (1:1); the other gets the GPU, nothing is left behind"
case=kill-tenant
start_daemon "$here/policies/w1-1.toml" "$W/ticks/$case.vgpud.json"
tenant a; tenant b; sleep 5; pkill_pid=$(pgrep -f "spin $SECS $ITERS $DEPTH b$"); date +%s.%N > "$W/ticks/$case.killed"; kill -KILL $pkill_pid
sleep 2; cp "$W/vgpud.state" "$W/ticks/$case.state-after"
wait $(jobs -p | grep -v "^$daemon_pid$") 2>/dev/null; stop_daemon

log "live policy reload"
"$here/reload.sh" "$art" | tee -a "$OUT/log.txt"

log "analysis"
python3 "$here/analyze.py" "$W" | tee "$OUT/results.md"
tar czf "$OUT/raw.tar.gz" -C "$W" ticks escbench.txt smiq.diff 2>/dev/null
