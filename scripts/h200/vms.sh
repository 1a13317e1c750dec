#!/bin/bash
# VM guests' path on the real GPU, without a VM: `vgpud --backend nvidia-vm` serves vGPU
# instances whose RM core runs on the host's driver, and `vgpu-guest --vfio-user` attaches them
# as host processes through their sockets (the same driver code a guest runs, BAR0 as socket
# messages, the window mapped from vgpud's memfd).
# Usage (on the GPU machine, from the repository root): scripts/h200/vms.sh [ARTIFACTS]
# ARTIFACTS holds vgpud, vgpuctl and vgpu-guest (default .h200, made by scripts/h200/build.sh).
# Results go to $OUT (default /tmp/h200-out): vms.md and the logs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
art=$(cd "${1:-$here/../../.h200}" && pwd)
OUT=${OUT:-/tmp/h200-out}; mkdir -p "$OUT"
[ -e /dev/nvidiactl ] || { echo "no /dev/nvidiactl: not a GPU machine, nothing to prove here"; exit 0; }
W=/tmp/h200-vms; rm -rf "$W"; mkdir -p "$W"
R=$OUT/vms.md
{ echo "# vgpud --backend nvidia-vm on $(nvidia-smi --query-gpu=name --format=csv,noheader), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo; echo "driver: $(head -1 /proc/driver/nvidia/version)"; echo; } > "$R"
step() { echo "== $*" | tee -a "$R"; }
ctl() { "$art/vgpuctl" --run-dir "$W/run" "$@"; }
guest() { timeout "${T:-60}" "$art/vgpu-guest" "$@"; }

"$art/vgpud" --backend nvidia-vm --config-dir "$W/conf" --run-dir "$W/run" > "$W/vgpud.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$W/run/vgpud.sock" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if ! [ -S "$W/run/vgpud.sock" ]; then step "vgpud did not start"; cat "$W/vgpud.log" | tee -a "$R"; exit 1; fi
head -5 "$W/vgpud.log" | tee -a "$R"
step "types"; ctl types 2>&1 | tee -a "$R"
uuid=$(ctl define --type sim-35c --tenant solo) && sock=$(ctl start --uuid "$uuid") || { step "define/start failed"; exit 1; }
echo "socket: $sock" | tee -a "$R"

step "vgpu-smi through vgpud on the real GPU"
guest smi --vfio-user "$sock" > "$W/smi.txt" 2>&1; echo "rc=$?" >> "$W/smi.txt"; tee -a "$R" < "$W/smi.txt"
step "status after smi"; ctl status 2>&1 | tee -a "$R"

step "workload (real Hopper methods only: --work-ns 0), polled"
guest workload --rounds ${ROUNDS:-50} --work-ns 0 --json --vfio-user "$sock" > "$W/workload.json" 2> "$W/workload.err"
echo "rc=$? $(cat "$W/workload.json")" | tee -a "$R"; tail -n 20 "$W/workload.err" | tee -a "$R"
step "workload, --memory video"
guest workload --rounds 10 --work-ns 0 --memory video --json --vfio-user "$sock" > "$W/workload-video.json" 2> "$W/workload-video.err"
echo "rc=$? $(cat "$W/workload-video.json")" | tee -a "$R"; tail -n 10 "$W/workload-video.err" | tee -a "$R"
step "hostile"
guest hostile --vfio-user "$sock" > "$W/hostile.txt" 2>&1; echo "rc=$?" | tee -a "$R"
grep -c '"ok":true' "$W/hostile.txt" | sed 's/^/checks ok: /' | tee -a "$R"; grep '"ok":false' "$W/hostile.txt" | tee -a "$R"
step "bench (escape round trip through vgpud to the real driver)"
guest bench --escapes 2000 --rounds 200 --vfio-user "$sock" 2>&1 | grep -v VGPU-RESULT | tee -a "$R"
step "status"; ctl status 2>&1 | tee -a "$R"
step "vgpud log"; tail -n 40 "$W/vgpud.log" | tee -a "$R"
step "kernel log (NVRM)"; dmesg 2>/dev/null | grep -i nvrm | tail -n 30 | tee -a "$R"
kill $pid; wait $pid 2>/dev/null
cp "$W"/*.txt "$W"/*.json "$W"/*.err "$W"/vgpud.log "$OUT/" 2>/dev/null
