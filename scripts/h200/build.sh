#!/bin/bash
# Builds what the H200 run needs (no cargo there) into .h200/ at the repository root, which
# `.git/info/exclude` ignores and the device run carries: librmshim.so (built against this
# machine's older glibc, so it loads on the GPU machine's newer one), a static vgpud, vgpuctl,
# vgpu-guest (the host-process guest of vms.sh) and rm-trace.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.h200/' "$exclude" 2>/dev/null || echo '/.h200/' >> "$exclude"
echo "building librmshim.so (release)"
cargo build -q --release -p rmshim
echo "building static vgpud, vgpuctl and vgpu-guest"
RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile static --target x86_64-unknown-linux-gnu -p mdev -p guest-tools
echo "building static rm-trace (probe-gr)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile static --target x86_64-unknown-linux-gnu -p rm-trace
target=${CARGO_TARGET_DIR:-$root/target}
mkdir -p .h200
static=$target/x86_64-unknown-linux-gnu/static
cp "$target/release/librmshim.so" "$static/vgpud" "$static/vgpuctl" "$static/vgpu-guest" "$static/rm-trace" .h200/
ls -l .h200
