#!/bin/busybox sh
# Init of the nested-KVM harness (L1). Loads kvm-amd, runs the scenario named by vgpu.scenario=
# on the kernel command line, prints VGPU-RESULT lines and powers off.
#
# Kernel command-line parameters (read from /proc/cmdline):
#   vgpu.scenario=boot|bench|share|boottest|diskbench
#                              boot: one test-guest boot; bench: vgpu.runs boots under each VMM;
#                              boottest: `vgpu-image boot-test`: boots /boottest/kernel (with
#                              /boottest/initrd if present, /boottest/cmdline, /boottest/memory
#                              MiB: a layer appended to this image) under vgpu-vmm with the outer
#                              QEMU's first disk (/dev/vda here) as its disk, writes in memory;
#                              diskbench: vgpu.runs boots of the boottest guest with
#                              vgpu.readbench under vgpu-vmm and QEMU microvm (virtio-blk-pci,
#                              snapshot=on), alternating, each ended once it printed both
#                              `Multi-User System` (systemd's target) and its `VGPU-READBENCH` dd line;
#                              share: two vgpu-vmm guests (labels prod and batch) streaming on one
#                              vgpud under a 3:1 policy that becomes 1:1 vgpu.switch_after seconds
#                              after both streams started (default 4); `VGPUD-STATUS written` and
#                              `VGPUD-STATUS reloaded` bracket the policy write
#   vgpu.prod_vmm=vgpu-vmm|qemu  the share scenario's VMM for prod (qemu: QEMU 11.1's vfio-user-pci
#                              with KVM; needs the harness variant with that QEMU)
#   vgpu.vmm=vgpu-vmm|qemu     inner VMM of the boot scenario (default vgpu-vmm)
#   vgpu.runs=N                boots per VMM in the bench scenario (default 5)
#   vgpu.timeout=SECS          limit of each inner run (default 120)
#   vgpu.guest_append="..."    words appended to the test guest's command line
#   vgpu.vmm_args="..."        extra vgpu-vmm arguments
#   vgpu.vgpu=TYPE             start vgpud, define and start one instance of TYPE (GFID 1, tenant
#                              vm1) and attach it to the vgpu-vmm guest; after the run, print
#                              `VGPUD-STATUS LABEL JSON` (vgpuctl status --json on one line)
#   vgpu.vgpu_intr=poll|intx   the attached instance's interrupt wiring in vgpu-vmm (default poll)
#   vgpu.qemu_machine=M        QEMU's -M value for the baseline (default microvm)
#   vgpu.monitor=SECS          every SECS seconds print a `mon| ` line per thread of vgpud and
#                              vgpu-vmm (state, kernel wait channel): what a hung run was doing
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

# start_vgpud ARGS...: starts the daemon in the background and waits for its control socket.
start_vgpud() {
    mkdir -p /etc/vgpud /run/vgpud
    vgpud --config-dir /etc/vgpud --run-dir /run/vgpud "$@" >/tmp/vgpud.log 2>&1 &
    i=0
    while [ ! -S /run/vgpud/vgpud.sock ]; do
        i=$((i + 1))
        if [ "$i" -gt 100 ]; then
            sed 's/^/vgpud! /' /tmp/vgpud.log
            finish false "vgpud did not open its control socket"
        fi
        sleep 0.1
    done
}

# new_instance TYPE GFID TENANT: defines and starts an instance; prints its vfio-user socket.
new_instance() {
    uuid=$(vgpuctl define --type "$1" --gfid "$2" --tenant "$3") || return 1
    vgpuctl start --uuid "$uuid"
}

# vgpud_status LABEL: the daemon's per-instance figures as one result line.
vgpud_status() {
    echo "VGPUD-STATUS $1 $(vgpuctl status --json | tr -d '\n')"
}

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

vgpu_type=$(param vgpu.vgpu)
if [ -n "$vgpu_type" ]; then
    start_vgpud
    sock=$(new_instance "$vgpu_type" 1 vm1) || finish false "vgpuctl could not start a $vgpu_type instance"
    intr=$(param vgpu.vgpu_intr)
    vmm_args="$vmm_args --vgpu socket=$sock${intr:+,intr=$intr}"
fi

# monitor SECS: the background loop behind vgpu.monitor.
monitor() {
    while sleep "$1"; do
        echo "mon| up $(cut -d' ' -f1 /proc/uptime) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
        for pid in $(pidof vgpud vgpu-vmm); do
            for t in /proc/$pid/task/*; do
                echo "mon| $(cat $t/comm) $(cut -d')' -f2 $t/stat | cut -d' ' -f2) $(cat $t/wchan)"
            done
        done
    done
}
mon_secs=$(param vgpu.monitor)
[ -n "$mon_secs" ] && monitor "$mon_secs" &

# boottest_disk: waits for the outer QEMU's disk as /dev/vda and checks for the /boottest layer.
boottest_disk() {
    for m in virtio_pci virtio_blk; do
        modprobe "$m" || finish false "modprobe $m failed"
    done
    i=0
    while [ ! -b /dev/vda ]; do
        i=$((i + 1))
        [ "$i" -gt 100 ] && finish false "the disk did not appear as /dev/vda in the harness"
        sleep 0.1
    done
    [ -f /boottest/kernel ] || finish false "this harness image has no /boottest layer"
}

case "$scenario" in
boot)
    vmm=$(param vgpu.vmm)
    case "${vmm:-vgpu-vmm}" in
    vgpu-vmm) run_vgpu_vmm guest ;;
    qemu) run_qemu guest ;;
    *) finish false "unknown vgpu.vmm" ;;
    esac
    if [ -n "$vgpu_type" ]; then
        vgpud_status guest
        tail -n 20 /tmp/vgpud.log | sed 's/^/vgpud| /'
    fi
    ;;
share)
    weights() {
        printf 'policy = "weighted"\n[[tenant]]\nname = "prod"\nweight = %s\n[[tenant]]\nname = "batch"\nweight = %s\n' "$1" "$2"
    }
    guests=
    weights 3 1 >/etc/vgpu/policy.toml
    start_vgpud --policy /etc/vgpu/policy.toml
    for t in prod batch; do
        gfid=1
        [ "$t" = batch ] && gfid=2
        sock=$(new_instance sim-35c "$gfid" "$t") || finish false "vgpuctl could not start the $t instance"
        if [ "$t" = prod ] && [ "$(param vgpu.prod_vmm)" = qemu ]; then
            [ -x /usr/bin/qemu-system-x86_64 ] || finish false "this harness image has no QEMU"
            # vfio-user passes guest RAM as fds, so RAM is a shared memfd; the vGPU itself works
            # only in its window. A plain CPU model, not `host`: under nested TCG the harness's
            # KVM never sees the guest's XSETBV, so XSAVE state breaks (vgpu-vmm hides XSAVE for
            # the same reason), and with `host,-xsave` the guest still died at boot now and then.
            (
                vgpu-guest timed-run --label "$t" --timeout "$timeout" -- \
                    qemu-system-x86_64 -M q35,memory-backend=mem \
                    -object memory-backend-memfd,id=mem,size=256M,share=on \
                    -accel kvm -cpu qemu64 -smp 1 -m 256 -nodefaults -no-user-config \
                    -display none -serial stdio -no-reboot \
                    -kernel /guest/vmlinux -initrd /guest/initrd.cpio.gz -append "$qemu_cmdline" \
                    -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$sock\"}}"
            ) >/tmp/$t.out 2>&1 &
            guests="$guests $!"
            # Let QEMU's guest boot before the other starts: two nested guests booting at once
            # under TCG, one on each VMM, crashed in early boot in most CI runs.
            i=0
            until grep -q '"record":"agent"' /tmp/$t.out; do
                i=$((i + 1))
                if [ "$i" -gt $((timeout * 10)) ] || ! kill -0 "$!" 2>/dev/null; then
                    cat /tmp/$t.out
                    finish false "a guest ended before both streams started"
                fi
                sleep 0.1
            done
        else
            (
                vgpu-guest timed-run --label "$t" --timeout "$timeout" -- \
                    vgpu-vmm --kernel /guest/vmlinux --initrd /guest/initrd.cpio.gz \
                    --cmdline "$vmm_cmdline" --memory 256 --vcpus 1 $vmm_args --vgpu "socket=$sock"
            ) >/tmp/$t.out 2>&1 &
            guests="$guests $!"
        fi
    done
    # Both guests' lines are relayed whole once they are done (a live relay of two files would
    # cut their long result lines); the runner sorts them by label.
    relay_guests() { cat /tmp/prod.out /tmp/batch.out 2>/dev/null; }
    i=0
    until grep -q '"stream_start"' /tmp/prod.out && grep -q '"stream_start"' /tmp/batch.out; do
        i=$((i + 1))
        if [ "$i" -gt $((timeout * 10)) ]; then
            relay_guests
            finish false "the two streams did not both start"
        fi
        for pid in $guests; do
            if ! kill -0 "$pid" 2>/dev/null; then
                sleep 1
                relay_guests
                finish false "a guest ended before both streams started"
            fi
        done
        sleep 0.1
    done
    switch=$(param vgpu.switch_after)
    sleep "${switch:-4}"
    vgpud_status written
    weights 1 1 >/etc/vgpu/policy.new && mv /etc/vgpu/policy.new /etc/vgpu/policy.toml
    vgpud_status reloaded
    wait $guests
    relay_guests
    vgpud_status share
    ;;
boottest)
    boottest_disk
    # --partial-after: a login prompt ends without a newline.
    initrd_arg=
    [ -f /boottest/initrd ] && initrd_arg="--initrd /boottest/initrd"
    vgpu-guest timed-run --label guest --timeout "$timeout" --partial-after 500 -- \
        vgpu-vmm --kernel /boottest/kernel $initrd_arg --cmdline "$(cat /boottest/cmdline)" \
        --memory "$(cat /boottest/memory)" --vcpus 1 --disk path=/dev/vda,snapshot $vmm_args
    ;;
diskbench)
    boottest_disk
    mkdir -p /var/tmp
    # Both VMMs read the disk through this kernel's page cache: fill the read's range first.
    dd if=/dev/vda of=/dev/null bs=1M count=256 2>/dev/null
    vmm_initrd= qemu_initrd=
    if [ -f /boottest/initrd ]; then
        vmm_initrd="--initrd /boottest/initrd" qemu_initrd="-initrd /boottest/initrd"
    fi
    cmdline="$(cat /boottest/cmdline) vgpu.readbench"
    mem=$(cat /boottest/memory)
    # bench_run LABEL COMMAND...: one boot, ended once both marks were printed.
    bench_run() {
        label=$1
        shift
        vgpu-guest timed-run --label "$label" --timeout "$timeout" --mark "Multi-User System" \
            --mark VGPU-READBENCH --stop-after-marks -- "$@"
    }
    runs=$(param vgpu.runs)
    runs=${runs:-3}
    i=1
    while [ "$i" -le "$runs" ]; do
        bench_run "vgpu-vmm-$i" vgpu-vmm --kernel /boottest/kernel $vmm_initrd \
            --cmdline "$cmdline" --memory "$mem" --vcpus 1 --disk path=/dev/vda,snapshot
        bench_run "qemu-$i" qemu-system-x86_64 -M microvm,pcie=on -enable-kvm -cpu host \
            -m "$mem" -smp 1 -nodefaults -no-user-config -display none \
            -serial stdio -no-reboot -kernel /boottest/kernel $qemu_initrd -append "$cmdline" \
            -drive file=/dev/vda,if=none,id=disk,format=raw,snapshot=on \
            -device virtio-blk-pci,drive=disk
        i=$((i + 1))
    done
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
