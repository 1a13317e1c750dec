#!/bin/busybox sh
# Init of the nested-KVM harness (L1). Loads kvm-amd, runs the scenario named by vgpu.scenario=
# on the kernel command line, prints VGPU-RESULT lines and powers off.
#
# Kernel command-line parameters (read from /proc/cmdline):
#   vgpu.scenario=boot|bench   boot: one test-guest boot; bench: vgpu.runs boots under each VMM
#   vgpu.vmm=vgpu-vmm|qemu     inner VMM of the boot scenario (default vgpu-vmm)
#   vgpu.runs=N                boots per VMM in the bench scenario (default 5)
#   vgpu.timeout=SECS          limit of each inner run (default 120)
#   vgpu.guest_append="..."    words appended to the test guest's command line
#   vgpu.vmm_args="..."        extra vgpu-vmm arguments (e.g. "--vgpu type=sim-35c,gfid=1")
#   vgpu.qemu_machine=M        QEMU's -M value for the baseline (default microvm)
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

param() { vgpu-guest cmdline-param "$1"; }
scenario=$(param vgpu.scenario)
scenario=${scenario:-boot}

finish() {
    if [ "$1" = true ]; then err=null; else err="\"$2\""; fi
    echo "VGPU-RESULT {\"record\":\"harness_end\",\"scenario\":\"$scenario\",\"ok\":$1,\"error\":$err}"
    sync
    poweroff -f
    reboot -f
}

echo "VGPU-RESULT {\"record\":\"harness_start\",\"scenario\":\"$scenario\"}"
modprobe kvm_amd || finish false "modprobe kvm_amd failed"
[ -c /dev/kvm ] || finish false "no /dev/kvm after loading kvm_amd"

timeout=$(param vgpu.timeout)
timeout=${timeout:-120}
append=$(param vgpu.guest_append)
vmm_args=$(param vgpu.vmm_args)
vmm_cmdline="$(cat /etc/vgpu/vmm-cmdline) $append"
qemu_cmdline="$(cat /etc/vgpu/qemu-cmdline) $append"
qemu_machine=$(param vgpu.qemu_machine)
qemu_machine=${qemu_machine:-microvm}

run_vgpu_vmm() {
    vgpu-guest timed-run --label "$1" --timeout "$timeout" -- \
        vgpu-vmm --kernel /guest/vmlinux --initrd /guest/initrd.cpio.gz \
        --cmdline "$vmm_cmdline" --memory 256 --vcpus 1 --stats $vmm_args
}

run_qemu() {
    [ -x /usr/bin/qemu-system-x86_64 ] || finish false "this harness image has no QEMU"
    vgpu-guest timed-run --label "$1" --timeout "$timeout" -- \
        qemu-system-x86_64 -M "$qemu_machine" -enable-kvm -cpu host -m 256 -smp 1 \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel /guest/vmlinux -initrd /guest/initrd.cpio.gz -append "$qemu_cmdline"
}

case "$scenario" in
boot)
    vmm=$(param vgpu.vmm)
    case "${vmm:-vgpu-vmm}" in
    vgpu-vmm) run_vgpu_vmm guest ;;
    qemu) run_qemu guest ;;
    *) finish false "unknown vgpu.vmm" ;;
    esac
    ;;
bench)
    runs=$(param vgpu.runs)
    runs=${runs:-5}
    i=1
    while [ "$i" -le "$runs" ]; do
        run_vgpu_vmm "vgpu-vmm-$i"
        run_qemu "qemu-$i"
        i=$((i + 1))
    done
    ;;
*)
    finish false "unknown scenario"
    ;;
esac
finish true
