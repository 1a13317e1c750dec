#!/bin/busybox sh
# Init of the stock initramfs `vgpu-image boot-test` boots a root file system image with (when
# the user gives no kernel of their own): loads the virtio disk driver, mounts the root file
# system named on the kernel command line and hands over to its init with switch_root.
#
# Kernel command-line parameters (from /proc/cmdline):
#   root=DEV         the root device (default /dev/vda)
#   rootfstype=TYPE  its file system (default ext4)
#   ro | rw          mount it read-only or read-write (default rw)
#   init=PATH        the init to run on it (default /sbin/init)
#
# When the root device does not appear or cannot be mounted it says why and drops to a shell,
# as Debian's initramfs-tools does ("ALERT! ... Dropping to a shell!"). When the root holds no
# init, switch_root fails, this init exits, and the kernel panics.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

root=/dev/vda
rootfstype=ext4
mode=rw
init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    root=*) root=${arg#root=} ;;
    rootfstype=*) rootfstype=${arg#rootfstype=} ;;
    init=*) init=${arg#init=} ;;
    ro | rw) mode=$arg ;;
    esac
done

emergency() {
    echo "ALERT! $1. Dropping to a shell!"
    exec sh
}

for m in virtio_pci virtio_blk; do
    modprobe "$m" || echo "stock initramfs: modprobe $m failed"
done
i=0
while [ ! -b "$root" ]; do
    i=$((i + 1))
    [ "$i" -gt 50 ] && emergency "$root does not exist"
    sleep 0.1
done
mkdir -p /newroot
mount -t "$rootfstype" -o "$mode" "$root" /newroot || emergency "cannot mount $root ($rootfstype, $mode)"
echo "stock initramfs: mounted $root on /, starting $init"
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /sys
umount /proc
exec switch_root /newroot "$init"
