#!/bin/busybox sh
# maguey-testbed node init (PID 1 of a node VM; the whole system lives in the initramfs).
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /mnt /root /etc /var /bb
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
# Busybox applets go to /bb, last in PATH: the real tools (iproute2's ip, lvm2, ...) win.
/bin/busybox --install -s /bb
# Absolute paths the kernel and other programs use (usermode helpers, request_module).
for a in /bin/true /bin/false /bin/mount /bin/umount /sbin/modprobe /sbin/insmod /sbin/rmmod \
  /sbin/lsmod; do
  [ -e $a ] || /bin/busybox ln -s /bin/busybox $a
done
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bb
export HOME=/root LVM_SUPPRESS_FD_WARNINGS=1 DM_DISABLE_UDEV=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /run/lock/lvm /run/lvm /var/lib /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
ln -sf /run /var/run
ln -sf /run/lock /var/lock
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/mounts /etc/mtab

ip_cidr=
hn=node
hosts=
gw=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    maguey.ip=*) ip_cidr=${arg#maguey.ip=} ;;
    maguey.gw=*) gw=${arg#maguey.gw=} ;;
    maguey.hostname=*) hn=${arg#maguey.hostname=} ;;
    maguey.hosts=*) hosts=${arg#maguey.hosts=} ;;
  esac
done

echo "maguey-testbed: loading modules"
for m in virtio_pci virtio_blk virtio_net virtio_console virtio_rng dm_mod dm_snapshot \
  tun bridge nbd loop vhost_net kvm_amd; do
  modprobe $m 2>/dev/null
done
# Ganeti does the same: no usermode helper (drbdadm would fail without a drbd.conf entry
# and make the kernel drop the connection).
modprobe drbd usermode_helper=/bin/true

hostname "$hn"
echo "$hn" > /etc/hostname
{
  echo "127.0.0.1 localhost"
  echo "::1 localhost ip6-localhost ip6-loopback"
  IFS_OLD=$IFS
  IFS=,
  for h in $hosts; do
    echo "${h#*=} ${h%%=*}"
  done
  IFS=$IFS_OLD
} > /etc/hosts
# maguey-qemu: the unprivileged user the node starts QEMU as (security_model=user).
printf "root:x:0:0:root:/root:/bin/sh\nmaguey-qemu:x:990:990:Maguey QEMU processes:/nonexistent:/bin/false\n" > /etc/passwd
printf "root:x:0:\ndisk:x:6:\nkvm:x:104:\nmaguey-qemu:x:990:\n" > /etc/group

/sbin/ip link set lo up
i=0
while [ $i -lt 100 ] && [ ! -e /sys/class/net/eth0 ]; do usleep 50000; i=$((i+1)); done
if [ -n "$ip_cidr" ]; then
  /sbin/ip addr add "$ip_cidr" dev eth0
  /sbin/ip link set eth0 up
  [ -n "$gw" ] && /sbin/ip route add default via "$gw"
fi
i=0
while [ $i -lt 100 ] && [ ! -b /dev/vda ]; do usleep 50000; i=$((i+1)); done

# DRBD state changes and other kernel messages go to the serial console (the artifact log).
dmesg -n 7

# The command agent. Request (one line): ID TIMEOUT_SECONDS BASE64_SCRIPT. The script runs
# with /bin/sh (dash) in /root, stdin /dev/null, stdout+stderr captured together.
# Reply: "MAGUEY-OUT ID LEN\n", LEN bytes of output, "MAGUEY-RC ID RC TIMEDOUT\n".
agent() {
  name=$1
  port=
  i=0
  while [ -z "$port" ] && [ $i -lt 200 ]; do
    for p in /sys/class/virtio-ports/*; do
      [ "$(cat $p/name 2>/dev/null)" = "$name" ] && port=/dev/${p##*/}
    done
    [ -z "$port" ] && usleep 50000
    i=$((i+1))
  done
  if [ -z "$port" ]; then
    echo "maguey-testbed: no virtio port $name"
    return
  fi
  d=/run/agent.$name
  mkdir -p $d
  exec 9<>$port
  echo "maguey-testbed: agent $name on $port"
  while true; do
    if ! read -r id tmo b64 <&9; then
      # The host side is not connected (EOF): poll.
      usleep 200000
      continue
    fi
    [ -z "$id" ] && continue
    case "$tmo" in ''|*[!0-9]*) tmo=600 ;; esac
    rm -f $d/timedout $d/out
    if ! echo "$b64" | base64 -d > $d/script 2>/dev/null; then
      echo "maguey-testbed: bad request" > $d/out
      rc=2
    else
      # setsid: the script leads its own process group, so a timeout kills all of it.
      ( cd /root && exec setsid /bin/sh $d/script ) </dev/null >$d/out 2>&1 9>&- &
      pid=$!
      (
        trap 'kill $s 2>/dev/null; exit 0' TERM
        sleep $tmo &
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
}

agent maguey.diag &
echo "MAGUEY-NODE-READY $hn $(cut -d' ' -f1 /proc/uptime)"
agent maguey.agent &
while true; do
  wait
  sleep 1
done
