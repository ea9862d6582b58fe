#!/usr/bin/env bash
# A private Slurm cluster on this machine, for the Slurm backend's tests (run as root).
#
#   scripts/slurm-cluster.sh up DIR          one host: slurmctld + slurmd on this machine
#   scripts/slurm-cluster.sh up2 DIR         two hosts: slurmd n1 and n2 in network namespaces
#                                            (10.250.0.11 and .12 on a bridge at 10.250.0.1)
#   scripts/slurm-cluster.sh down DIR        stops the daemons (and removes the namespaces)
#
# `up` prints `export SLURM_CONF=DIR/slurm.conf`. Every cluster gets its own state directory
# and free ports, so several can run at once; munged is shared (started if not running).
# No systemd, no cgroups, no accounting database: proctrack/linuxproc, task/none and the
# job-completion log in DIR/log/jobcomp.txt (the recipe of Slurm's single-machine test setups).
set -euo pipefail

cmd=${1:?usage: $0 up|up2|down DIR}
dir=${2:?usage: $0 up|up2|down DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
bridge=mlebr0

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

start_munge() {
    # Clusters started at the same moment (parallel tests) must not both start munged: the
    # second one fails on munged's socket lock.
    exec {lock}>/tmp/mle-slurm-munge.lock
    flock "$lock"
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
        exec {lock}>&-
        return
    fi
    mkdir -p /run/munge /etc/munge
    chown munge:munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 2>/dev/null
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged {lock}>&-
    exec {lock}>&-
}

write_conf() { # $1 = controller host, $2 = controller address, then node lines
    local host=$1 addr=$2
    shift 2
    cat >"$conf" <<CONF
ClusterName=mle$$
SlurmctldHost=$host($addr)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
MpiDefault=none
MailProg=/bin/true
CONF
    printf '%s\n' "$@" >>"$conf"
}

wait_idle() { # $1 = nodes expected idle
    for _ in $(seq 1 150); do
        if [ "$(sinfo -h -N -o %T 2>/dev/null | grep -c '^idle')" -ge "$1" ]; then
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm did not become idle; see $dir/log" >&2
    sinfo -N >&2 || true
    exit 1
}

case $cmd in
up)
    start_munge
    mkdir -p "$dir"/{spool/ctld,log}
    host=$(hostname -s)
    write_conf "$host" 127.0.0.1 \
        "NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN" \
        "PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP"
    export SLURM_CONF=$conf
    /usr/sbin/slurmctld -f "$conf"
    /usr/sbin/slurmd -f "$conf"
    wait_idle 1
    ;;
up2)
    start_munge
    # Leftovers of an interrupted run.
    for n in 1 2; do ip netns del mle-n$n 2>/dev/null || true; done
    ip link del $bridge 2>/dev/null || true
    mkdir -p "$dir"/{spool/ctld,log}
    ip link add $bridge type bridge
    ip addr add 10.250.0.1/24 dev $bridge
    ip link set $bridge up
    for n in 1 2; do
        ip netns add mle-n$n
        ip link add mle-veth$n type veth peer name eth0 netns mle-n$n
        ip link set mle-veth$n master $bridge up
        ip -n mle-n$n addr add 10.250.0.1$n/24 dev eth0
        ip -n mle-n$n link set eth0 up
        ip -n mle-n$n link set lo up
        mkdir -p /var/tmp/mle-slurm-n$n
    done
    mkdir -p /var/tmp/slurm-node
    write_conf "$(hostname -s)" 10.250.0.1 \
        "TmpFS=/var/tmp/slurm-node" \
        "NodeName=n1 NodeAddr=10.250.0.11 NodeHostname=n1 CPUs=4 RealMemory=4000 State=UNKNOWN" \
        "NodeName=n2 NodeAddr=10.250.0.12 NodeHostname=n2 CPUs=4 RealMemory=4000 State=UNKNOWN" \
        "PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP"
    export SLURM_CONF=$conf
    /usr/sbin/slurmctld -f "$conf"
    for n in 1 2; do
        # nsenter rather than `ip netns exec` (which remounts /sys under slurmd); a private
        # mount namespace gives each node its own TmpFS.
        nsenter --net=/run/netns/mle-n$n unshare -m --propagation private sh -c \
            "mount --bind /var/tmp/mle-slurm-n$n /var/tmp/slurm-node && exec /usr/sbin/slurmd -f $conf -N n$n"
    done
    wait_idle 2
    ;;
down)
    for f in "$dir"/slurmd-*.pid "$dir"/slurmctld.pid; do
        [ -s "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        alive=0
        for f in "$dir"/slurmd-*.pid "$dir"/slurmctld.pid; do
            [ -s "$f" ] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for f in "$dir"/slurmd-*.pid "$dir"/slurmctld.pid; do
        [ -s "$f" ] && kill -9 "$(cat "$f" 2>/dev/null)" 2>/dev/null || true
    done
    if grep -q '^NodeName=n1 ' "$conf" 2>/dev/null; then
        for n in 1 2; do
            ip netns pids mle-n$n 2>/dev/null | xargs -r kill -9 2>/dev/null || true
            ip netns del mle-n$n 2>/dev/null || true
        done
        ip link del $bridge 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 up|up2|down DIR" >&2
    exit 2
    ;;
esac
