#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on the CI machine, for tests/test_slurm.py.
#
#   .ci/slurm.sh up     install (Debian packages) and start munge, slurmctld and slurmd
#   .ci/slurm.sh down   cancel every job, wait for the queue to drain, stop the daemons
#
# Needs root, apt-get and no running SLURM of its own; without them `up` exits 2 with the reason
# (and the SLURM tests skip, saying why). No systemd: the daemons are started by hand and
# stopped by the pids this script recorded (never by name). The node is this machine, so jobs
# see the same files and the same virtualenv as the submitting process.
set -euo pipefail

STATE=/run/scar-slurm            # pids of what `up` started, in start order
CONF=/etc/slurm/slurm.conf
MARK="# written by scar .ci/slurm.sh"

say() { echo "slurm.sh: $*" >&2; }
cannot() { say "cannot start a SLURM cluster here: $*"; exit 2; }

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

wait_gone() {  # pid, seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
    return 1
}

start_daemon() {  # name pidfile command...: start a self-daemonizing daemon, record its pid
    local name=$1 pidfile=$2 pid="" i
    shift 2
    rm -f "$pidfile"
    "$@"
    for ((i = 0; i < 100; i++)); do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        alive "$pid" && break
        sleep 0.1
    done
    alive "$pid" || { say "$name did not start (no live pid in $pidfile)"; return 1; }
    echo "$name $pid" >> "$STATE/pids"
    say "$name started (pid $pid)"
}

up() {
    [[ $(id -u) -eq 0 ]] || cannot "not root (uid $(id -u))"
    command -v apt-get >/dev/null || cannot "no apt-get (not a Debian-like machine)"
    if [[ -e $STATE/pids ]]; then
        if [[ $(sinfo -h -o %T 2>/dev/null || true) == idle ]]; then
            say "a cluster from an earlier 'up' is running and idle; using it"
            return 0
        fi
        say "a cluster from an earlier 'up' is recorded but not idle; stopping it first"
        down
    fi
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        cannot "$CONF exists and is not ours: refusing to replace a real SLURM configuration"
    fi

    local pkgs=(munge slurmctld slurmd slurm-client)
    if [[ $(dpkg-query -W -f='${Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c "install ok installed") -eq ${#pkgs[@]} ]]; then
        say "packages already installed: ${pkgs[*]}"
    else
        say "installing ${pkgs[*]}"
        # No init system here: keep dpkg from trying to start the services it installs.
        local policy=""
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            policy=/usr/sbin/policy-rc.d
        fi
        local ok=0
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; } || ok=$?
        [[ -z $policy ]] || rm -f "$policy"
        [[ $ok -eq 0 ]] || cannot "apt-get install ${pkgs[*]} failed (exit $ok)"
    fi

    mkdir -p "$STATE"
    : > "$STATE/pids"
    local slurm_user=slurm
    id -u slurm >/dev/null 2>&1 || slurm_user=root
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o "$slurm_user" -m 0755 /run/slurm /var/spool/slurmctld /var/log/slurm
    install -d -m 0755 /var/spool/slurmd

    # munge: authentication between the daemons and the client commands.
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    if alive "$(cat /run/munge/munged.pid 2>/dev/null || true)"; then
        say "munged already running; using it (it will not be stopped by 'down')"
    else
        start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
    fi
    munge -n | unmunge >/dev/null || { say "munge does not work"; down; exit 1; }

    local host mem
    host=$(hostname -s)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$CONF" <<EOF
$MARK; removed by '.ci/slurm.sh down'
ClusterName=scarci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$slurm_user
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# squeue-based job status needs finished jobs to stay listed for a while.
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    start_daemon slurmctld /run/slurm/slurmctld.pid /usr/sbin/slurmctld -c -i || { down; exit 1; }
    start_daemon slurmd /run/slurm/slurmd.pid /usr/sbin/slurmd || { down; exit 1; }

    local i state=""
    for ((i = 0; i < 60; i++)); do
        state=$(sinfo -h -o %T 2>/dev/null || true)
        [[ $state == idle ]] && break
        sleep 1
    done
    if [[ $state != idle ]]; then
        say "the node did not become idle within 60 s (state: '${state:-none}'); logs in /var/log/slurm/"
        tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
        down
        exit 1
    fi
    say "cluster up: $(sinfo -h -o '%P %D %c %m %T')"
}

down() {
    if [[ ! -e $STATE/pids ]]; then
        say "nothing recorded in $STATE/pids; nothing to stop"
        return 0
    fi
    if command -v scancel >/dev/null && alive "$(awk '$1 == "slurmctld" {print $2}' "$STATE/pids")"; then
        scancel --user="$(id -un)" 2>/dev/null || true
        local i
        for ((i = 0; i < 60; i++)); do
            [[ -z $(squeue -h -t RUNNING,PENDING,COMPLETING,CONFIGURING -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    # Reverse start order: slurmd, slurmctld, munged.
    local name pid
    tac "$STATE/pids" | while read -r name pid; do
        alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 20; then
            say "$name (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || true
        fi
        say "$name (pid $pid) stopped"
    done
    rm -f "$STATE/pids"
    if [[ -e $CONF ]] && grep -qF "$MARK" "$CONF"; then rm -f "$CONF"; fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 64 ;;
esac
