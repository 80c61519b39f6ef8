#!/bin/bash
# Builds the root disk of a Debian node VM (crates/testbed/src/debian.rs runs this; the cache
# key hashes this whole file, so any change here rebuilds the image):
#
#   debian-root.sh OUT_DIR SUITE MIRROR [TREE_CACHE_DIR]
#
# The debootstrap tree itself is kept as TREE_CACHE_DIR/debootstrap-KEY.tar (KEY: the suite
# and the package list), so a change of the configuration below costs no download.
#
# A minbase debootstrap of SUITE with systemd, udev, the Debian cloud kernel (+ initramfs),
# and every package magueyd's .deb depends on (QEMU, qemu-utils, LVM, DRBD utilities,
# iproute2, passwd), so that `dpkg -i` of the built packages works with no network. The
# testbed's units bring up the static address and hostname from the kernel command line and
# run the command agent on the virtio-serial ports. Output in OUT_DIR: root.img (ext4 labelled
# mgroot, made with mkfs.ext4 -d: no loop mount), vmlinuz, initrd.img, packages.txt.
set -euo pipefail
OUT=$1
SUITE=$2
MIRROR=$3
TREES=${4:-}
PKGS=systemd-sysv,udev,dbus,kmod,procps,iproute2,lvm2,drbd-utils,qemu-system-x86,qemu-utils
PKGS=$PKGS,linux-image-cloud-amd64,initramfs-tools,e2fsprogs,passwd,less
WORK=$(mktemp -d "${TMPDIR:-/tmp}/maguey-debian-root.XXXXXX")
R=$WORK/root
cleanup() {
  for m in proc sys dev/pts dev; do umount "$R/$m" 2>/dev/null || true; done
  # Never remove a tree that still has the host's /dev or /proc mounted in it.
  if grep -q " $R/" /proc/mounts; then
    echo "debian-root.sh: $WORK left in place (mounts remain)" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
mkdir -p "$OUT"

TREE=
if [ -n "$TREES" ]; then
  mkdir -p "$TREES"
  TREE=$TREES/debootstrap-$(echo "$SUITE $PKGS" | sha256sum | cut -c1-16).tar
fi
if [ -n "$TREE" ] && [ -s "$TREE" ]; then
  mkdir -p "$R"
  tar -C "$R" -xf "$TREE"
else
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$R" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 || {
    tail -n 40 "$WORK/debootstrap.log" >&2
    exit 1
  }
  if [ -n "$TREE" ]; then
    rm -f "$TREES"/debootstrap-*.tar
    tar -C "$R" -cf "$TREE.tmp" . && mv -f "$TREE.tmp" "$TREE"
  fi
fi

# Identity: every node gets its own machine-id at first boot; name and address come from the
# kernel command line (testbed-net).
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
echo node > "$R/etc/hostname"
printf 'LABEL=mgroot / ext4 defaults,noatime 0 1\n' > "$R/etc/fstab"
# Faster boots: nothing periodic, no login prompt (the agent is the way in).
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer man-db.timer getty@tty1.service serial-getty@ttyS0.service \
  systemd-timesyncd.service systemd-logind.service blk-availability.service lvm2-monitor.service \
  modprobe@drm.service modprobe@fuse.service modprobe@efi_pstore.service \
  sys-fs-fuse-connections.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  dev-hugepages.mount dev-mqueue.mount systemd-pstore.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\nSystemMaxUse=64M\n' > "$R/etc/systemd/journald.conf.d/testbed.conf"

cat > "$R/usr/local/sbin/testbed-net" <<'EOF'
#!/bin/sh
# Hostname, /etc/hosts, the static address (maguey.ip=, maguey.hostname=, maguey.hosts=
# on the kernel command line), the node's kernel modules and the payload disk.
ip_cidr= hn=node hosts= gw=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    maguey.ip=*) ip_cidr=${arg#maguey.ip=} ;;
    maguey.gw=*) gw=${arg#maguey.gw=} ;;
    maguey.hostname=*) hn=${arg#maguey.hostname=} ;;
    maguey.hosts=*) hosts=${arg#maguey.hosts=} ;;
  esac
done
hostname "$hn"
echo "$hn" > /etc/hostname
{
  echo "127.0.0.1 localhost"
  echo "::1 localhost ip6-localhost ip6-loopback"
  echo "$hosts" | tr , '\n' | while IFS== read -r name addr; do
    [ -n "$name" ] && echo "$addr $name"
  done
} > /etc/hosts
# One modprobe for all (each process costs under TCG); udev and the tools load the rest.
modprobe -a virtio_net kvm_amd tun bridge dm_mod 2>/dev/null || true
ip link set lo up
i=0
while [ $i -lt 200 ] && [ ! -e /sys/class/net/eth0 ]; do sleep 0.05; i=$((i+1)); done
if [ -n "$ip_cidr" ]; then
  ip addr replace "$ip_cidr" dev eth0
  ip link set eth0 up
  if [ -n "$gw" ]; then ip route replace default via "$gw"; fi
fi
mkdir -p /mnt/payload
mount -o ro LABEL=mgpayload /mnt/payload 2>/dev/null || true
echo "MAGUEY-NODE-READY $hn $(cut -d' ' -f1 /proc/uptime)" > /dev/console
exit 0
EOF

cat > "$R/usr/local/sbin/testbed-agent" <<'EOF'
#!/bin/bash
# The testbed's command agent on the virtio-serial port named $1 (same protocol as the
# initramfs nodes' /init). Request: ID TIMEOUT BASE64_SCRIPT. The script runs with /bin/sh
# in /root, stdin /dev/null, stdout+stderr captured. Reply: "MAGUEY-OUT ID LEN\n", the output,
# "MAGUEY-RC ID RC TIMEDOUT\n".
name=$1
port=
for _ in $(seq 400); do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = "$name" ] && port=/dev/${p##*/}
  done
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "testbed-agent: no virtio port $name"; exit 1; }
d=/run/agent.$name
mkdir -p $d /root
exec 9<>"$port"
# Scripts run in a cgroup of their own below the service's (Delegate=yes), as in a login
# session: a program that asks whether it runs as a systemd service (magueyd --join) must
# not take the agent's service for its own.
base=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
sess=
if mkdir -p "$base/agent" "$base/session" 2>/dev/null && echo $$ > "$base/agent/cgroup.procs"; then
  sess=$base/session
fi
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export LVM_SUPPRESS_FD_WARNINGS=1
while true; do
  if ! read -r id tmo b64 <&9; then
    sleep 0.2
    continue
  fi
  [ -z "$id" ] && continue
  case "$tmo" in ''|*[!0-9]*) tmo=600 ;; esac
  rm -f $d/timedout $d/out
  if ! echo "$b64" | base64 -d > $d/script 2>/dev/null; then
    echo "testbed-agent: bad request" > $d/out
    rc=2
  else
    (
      [ -n "$sess" ] && echo $BASHPID > "$sess/cgroup.procs"
      cd /root && exec setsid /bin/sh $d/script
    ) </dev/null >$d/out 2>&1 9>&- &
    pid=$!
    (
      trap 'kill $s 2>/dev/null; exit 0' TERM
      sleep "$tmo" &
      s=$!
      wait $s
      : > $d/timedout
      kill -9 -- -$pid 2>/dev/null
      kill -9 $pid 2>/dev/null
    ) 9>&- &
    wd=$!
    wait $pid
    rc=$?
    kill $wd 2>/dev/null
    wait $wd 2>/dev/null
  fi
  to=0
  [ -e $d/timedout ] && to=1
  len=$(wc -c < $d/out)
  printf 'MAGUEY-OUT %s %s\n' "$id" "$len" >&9
  cat $d/out >&9
  printf 'MAGUEY-RC %s %s %s\n' "$id" "$rc" "$to" >&9
done
EOF
chmod 755 "$R/usr/local/sbin/testbed-net" "$R/usr/local/sbin/testbed-agent"

cat > "$R/etc/systemd/system/testbed-net.service" <<'EOF'
[Unit]
Description=Testbed: hostname, static address and modules from the kernel command line
DefaultDependencies=no
After=systemd-udevd.service systemd-remount-fs.service
Before=network.target network-online.target sysinit.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/testbed-net

[Install]
WantedBy=sysinit.target network-online.target
EOF
cat > "$R/etc/systemd/system/testbed-agent@.service" <<'EOF'
[Unit]
Description=Testbed command agent on virtio port %i
After=testbed-net.service
DefaultDependencies=no
Before=shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=/usr/local/sbin/testbed-agent %i
KillMode=control-group
Delegate=yes

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$R/etc/systemd/system/sysinit.target.wants" "$R/etc/systemd/system/network-online.target.wants" \
  "$R/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/testbed-net.service "$R/etc/systemd/system/sysinit.target.wants/"
ln -sf /etc/systemd/system/testbed-net.service "$R/etc/systemd/system/network-online.target.wants/"
for p in maguey.agent maguey.diag; do
  ln -sf /etc/systemd/system/testbed-agent@.service \
    "$R/etc/systemd/system/multi-user.target.wants/testbed-agent@$p.service"
done

# A small initramfs (virtio disk and ext4 only): less to unpack at every boot under TCG.
printf 'MODULES=list\n' > "$R/etc/initramfs-tools/conf.d/testbed.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$R/etc/initramfs-tools/modules"
for m in proc sys dev; do mount --bind "/$m" "$R/$m"; done
chroot "$R" update-initramfs -u -k all > "$WORK/initramfs.log" 2>&1 || {
  cat "$WORK/initramfs.log" >&2
  exit 1
}
for m in proc sys dev; do umount "$R/$m"; done
# First-boot work done now (ldconfig.service, systemd-update-done and co. check these).
chroot "$R" ldconfig
touch "$R/etc/.updated" "$R/var/.updated"

chroot "$R" dpkg-query -W -f '${Package}=${Version}\n' > "$WORK/packages.txt"
cp -L "$R"/boot/vmlinuz-* "$WORK/vmlinuz"
cp -L "$R"/boot/initrd.img-* "$WORK/initrd.img"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
mkfs.ext4 -q -L mgroot -d "$R" -F "$WORK/root.img" 4G
for f in root.img vmlinuz initrd.img packages.txt; do mv -f "$WORK/$f" "$OUT/$f"; done
