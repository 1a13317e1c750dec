#!/usr/bin/env bash
# Two VMs share one (simulated) GPU under one policy: vgpud with a 3:1 policy, two instances,
# two QEMU 11.1 guests attached over vfio-user that keep the GPU busy; after a few seconds the
# policy file is replaced by 1:1 and the daemon reloads it while both run. Prints vgpuctl status
# under each policy and each guest's work per second of GPU time.
#
# Usage: scripts/two-vms.sh [SECONDS]   (how long each guest streams work, default 10)
# Needs: bash .ci/setup; the first run builds the images and fetches QEMU (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

cargo build --release -q -p images --bin vgpu-image
image=target/release/vgpu-image
"$image" build >/dev/null
qemu_prefix=$("$image" qemu | sed -n 's/^command: //p')
bins=.cache/images/target/x86_64-unknown-linux-gnu/static
kernel=.cache/images/kernels/cloud/vmlinux
initrd=.cache/images/guest/initrd.cpio.gz

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
policy() {
    printf 'policy = "weighted"\n[[tenant]]\nname = "prod"\nweight = %s\n[[tenant]]\nname = "batch"\nweight = %s\n' "$1" "$2" >"$dir/policy.new"
    mv "$dir/policy.new" "$dir/policy.toml"
}
policy 3 1
"$bins/vgpud" --config-dir "$dir/conf" --run-dir "$dir/run" --policy "$dir/policy.toml" >"$dir/vgpud.log" 2>&1 &
for _ in $(seq 100); do [ -S "$dir/run/vgpud.sock" ] && break; sleep 0.1; done
export VGPUD_RUN_DIR=$dir/run
vgpuctl() { "$bins/vgpuctl" "$@"; }

for vm in prod batch; do
    gfid=$([ $vm = prod ] && echo 1 || echo 2)
    uuid=$(vgpuctl define --type sim-35c --gfid "$gfid" --tenant "$vm")
    socket=$(vgpuctl start --uuid "$uuid")
    echo "== $vm: instance $uuid at $socket"
    # shellcheck disable=SC2086 # the prefix is several words
    $qemu_prefix -M q35,memory-backend=mem -object memory-backend-memfd,id=mem,size=256M,share=on \
        -accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config -display none \
        -serial stdio -no-reboot -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 reboot=t panic=-1 quiet vgpu.scenario=share vgpu.stream_seconds=$seconds" \
        -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$socket\"}}" \
        >"$dir/$vm.log" 2>&1 &
done

echo "== waiting for both guests to start streaming"
until grep -q stream_start "$dir/prod.log" && grep -q stream_start "$dir/batch.log"; do sleep 0.2; done
sleep $((seconds / 2))
echo "== under 3:1"
vgpuctl status
policy 1 1
sleep 2
echo "== two seconds after replacing the policy with 1:1"
vgpuctl status
wait $(jobs -p | tail -n 2) 2>/dev/null || true
for vm in prod batch; do
    grep -o '"record":"stream","units":[0-9]*' "$dir/$vm.log" | sed "s/.*:/== $vm completed units: /"
done
