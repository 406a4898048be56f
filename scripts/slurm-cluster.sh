#!/usr/bin/env bash
# A real one-node SLURM cluster for CI and local tests (Debian slurm-wlm + munge, no accounting,
# one fake A100 through gres, a cpu and a gpu partition on the node, as profiles/slurm expects). Facts behind the settings: ../shared/notes/local-slurm-cluster.md.
#   scripts/slurm-cluster.sh start   # installs the packages if missing, starts munged, slurmctld, slurmd
#   scripts/slurm-cluster.sh stop    # stops them by PID
# State lives in $SLURM_BASE (default /tmp/promis-slurm). Needs root.
set -euo pipefail
BASE=${SLURM_BASE:-/tmp/promis-slurm}
HOST=$(hostname -s)

start() {
    if ! command -v slurmctld >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
            || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
    fi
    mkdir -p "$BASE"/{run,log,state/ctld,state/d,fakegpu,etc}
    [ -e "$BASE/fakegpu/gpu0" ] || mknod -m 666 "$BASE/fakegpu/gpu0" c 1 3
    local mem cpus
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
# the SLURM executor plugin runs "scontrol show config" whenever Snakemake starts; once this cluster is
# stopped, a short timeout makes that call fail in ~2 s instead of ~9 s (local messages take milliseconds)
MessageTimeout=3
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:a100:1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF
    # the fake GPU: a distinct character device (an alias of /dev/null), typed so --gpus=a100:1 matches
    echo "NodeName=$HOST Name=gpu Type=a100 File=$BASE/fakegpu/gpu0" > /etc/slurm/gres.conf
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    /usr/sbin/slurmctld
    /usr/sbin/slurmd
    for _ in $(seq 1 100); do
        if sinfo -h -n "$HOST" -o %T 2>/dev/null | grep -qE 'idle|mixed|allocated'; then
            echo "slurm cluster up: node $HOST, $cpus CPUs, 1 fake A100, partitions cpu and gpu"
            return 0
        fi
        sleep 0.3
    done
    echo "slurm cluster did not come up; see $BASE/log" >&2
    return 1
}

stop() {
    for pidfile in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" /run/munge/munged.pid; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    sleep 1
    echo "slurm cluster stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
