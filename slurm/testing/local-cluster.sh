#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, for tests and for trying the templates:
# munged, mariadbd, slurmdbd, slurmctld, slurmd (Debian's slurm 22.05), started by hand without systemd.
#
#   slurm/testing/local-cluster.sh up       install missing packages (apt-get, root), start, wait until usable
#   slurm/testing/local-cluster.sh down     stop exactly the daemons `up` started (recorded pids)
#   slurm/testing/local-cluster.sh status   exit 0 if every daemon runs and sinfo/sacct answer
#
# Config, state, logs and pid records live in one folder: $GATSCALE_SLURM_DIR (default /tmp/gatscale-slurm).
# Clients find the cluster with `export SLURM_CONF=$GATSCALE_SLURM_DIR/etc/slurm.conf` (or `source .../env.sh`).
# `down` keeps the state, so job ids keep counting up; `rm -rf` the folder after `down` for a fresh cluster
# (SLURM then reuses job ids: use fresh submitit folders).
set -euo pipefail

DIR=${GATSCALE_SLURM_DIR:-/tmp/gatscale-slurm}
PORT=${GATSCALE_SLURM_PORT:-6817}        # slurmctld; slurmd +1, slurmdbd +2, mariadb +3
TIMEOUT=${GATSCALE_SLURM_TIMEOUT:-120}   # seconds each daemon may take to become usable
CLUSTER=gatscale
ACCOUNT=gatscale
NODE=$(hostname -s)
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
BINARIES=(munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr sbatch)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; `down` stops them in reverse

export PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
MYSQL_SOCKET=$DIR/mariadb/mariadb.sock   # in the datadir: mariadbd runs as user mysql

say() { echo "local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Pid records: $DIR/pids/<daemon>.pid holds the pid `up` started; a pid counts only while
# /proc/<pid>/comm still names that daemon (a recycled pid is never signalled) and it is no zombie.

pid_of() {  # print the recorded pid of daemon $1 if that process still runs, else nothing
    local file=$DIR/pids/$1.pid pid
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$1" ]] || return 0
    [[ $(cut -d' ' -f3 /proc/"$pid"/stat 2>/dev/null) == Z ]] && return 0   # exited, not yet reaped
    echo "$pid"
}

start_daemon() {  # start_daemon NAME CMD...: run CMD in its own session, record its pid
    local name=$1; shift
    local pid
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pids/$name.pid"
    sleep 0.2
    [[ -n $(pid_of "$name") ]] || die "$name exited at once; see $DIR/log/$name.out:
$(tail -n 15 "$DIR/log/$name.out")"
    say "started $name (pid $pid)"
}

wait_until() {  # wait_until DAEMON WHAT CMD...: poll CMD for up to $TIMEOUT s while DAEMON runs
    local daemon=$1 what=$2; shift 2
    local log=$DIR/log/$daemon.out deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        [[ -n $(pid_of "$daemon") ]] || die "$daemon exited; last lines of $log:
$(tail -n 15 "$log" 2>/dev/null)"
        if ((SECONDS >= deadline)); then
            die "$what not ready after ${TIMEOUT}s (GATSCALE_SLURM_TIMEOUT); last lines of $log:
$(tail -n 15 "$log" 2>/dev/null)"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# Packages

install_packages() {
    local missing=() b
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null || missing+=("$b")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root (apt-get install ${PACKAGES[*]})"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Keep the packages' init scripts from starting system-wide daemons of their own.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1; fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}")
    "${apt[@]}" >"$DIR/log/apt.log" 2>&1 || { apt-get update -q >>"$DIR/log/apt.log" 2>&1 && "${apt[@]}" >>"$DIR/log/apt.log" 2>&1; } \
        || { ((made_policy)) && rm -f "$policy"; die "apt-get install ${PACKAGES[*]} failed; see $DIR/log/apt.log"; }
    ((made_policy)) && rm -f "$policy"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Config files (rewritten on every `up` that starts slurmctld, so they follow this machine)

write_configs() {
    local cpus mem_mb password
    cpus=$(nproc)
    mem_mb=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')   # slurmd drains a node that reports less than this
    if [[ -s $DIR/etc/slurmdbd.conf ]]; then
        password=$(sed -n 's/^StoragePass=//p' "$DIR/etc/slurmdbd.conf")
    else
        password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    fi
    cat >"$DIR/etc/slurm.conf.tmp" <<EOF
# Written by slurm/testing/local-cluster.sh: one node, this machine's CPUs and memory.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire (default 120 s) is also how long a requeued job waits before it may start again.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
StateSaveLocation=$DIR/state/slurmctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups here: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# Frequent scheduling passes: requeued and time-released jobs start within seconds.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem_mb / cpus / 2))
MaxArraySize=1001
ReturnToService=2
JobRequeue=1
# Short grace between SIGTERM and SIGKILL at a time limit, scancel or requeue (default 30 s).
KillWait=2
InactiveLimit=0
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# With auth/munge this names the munged socket for connections to slurmdbd (AuthInfo covers the rest).
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
PartitionName=long Nodes=ALL Default=NO MaxTime=1440 State=UP
EOF
    mv "$DIR/etc/slurm.conf.tmp" "$DIR/etc/slurm.conf"
    (umask 077; cat >"$DIR/etc/slurmdbd.conf.tmp" <<EOF
# Written by slurm/testing/local-cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
    )
    mv "$DIR/etc/slurmdbd.conf.tmp" "$DIR/etc/slurmdbd.conf"
    cat >"$DIR/env.sh" <<EOF
export SLURM_CONF=$SLURM_CONF
EOF
}

# ---------------------------------------------------------------------------------------------
# Daemons

start_munged() {
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"; chmod 0755 "$DIR/munge"
    if [[ ! -s $DIR/munge/munge.key ]]; then
        (umask 077; head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
    fi
    chown munge:munge "$DIR/munge/munge.key"; chmod 0600 "$DIR/munge/munge.key"
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed"
    wait_until munged "munged socket" test -S "$MUNGE_SOCKET"
}

mariadb_sql() { mariadb --no-defaults --protocol=socket --socket="$MYSQL_SOCKET" -u root "$@"; }

start_mariadbd() {
    if [[ ! -d $DIR/mariadb/mysql ]]; then
        mkdir -p "$DIR/mariadb"; chown mysql:mysql "$DIR/mariadb"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mariadb" --skip-test-db \
            --auth-root-authentication-method=normal >"$DIR/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
    fi
    start_daemon mariadbd mariadbd --no-defaults --user=mysql --datadir="$DIR/mariadb" \
        --socket="$MYSQL_SOCKET" --port=$((PORT + 3)) --bind-address=127.0.0.1 --skip-name-resolve \
        --pid-file="$DIR/mariadb/mariadbd.pid" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
    wait_until mariadbd "mariadb" mariadb_sql -e 'SELECT 1'
    local password
    password=$(sed -n 's/^StoragePass=//p' "$DIR/etc/slurmdbd.conf")
    mariadb_sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
        ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || die "could not create the database user 'slurm'; see $DIR/log/mariadbd.out"
}

start_slurmdbd() {
    start_daemon slurmdbd slurmdbd -D
    wait_until slurmdbd "slurmdbd (sacctmgr)" sacctmgr -n list cluster
    # The association tree the local-test profile names: cluster -> account -> user.
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="gatscale tests" organization=gatscale >/dev/null
    fi
    local user
    user=$(id -un)
    if [[ -z $(sacctmgr -n -P list assoc user="$user" account="$ACCOUNT" cluster="$CLUSTER" format=user) ]]; then
        sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    start_daemon slurmctld slurmctld -D -i
    wait_until slurmctld "slurmctld (scontrol ping)" scontrol ping
}

node_usable() { [[ $(sinfo -h -n "$NODE" -o %t 2>/dev/null) =~ ^(idle|mix|alloc|comp)$ ]]; }

start_slurmd() {
    start_daemon slurmd slurmd -D -N "$NODE"
    wait_until slurmd "node $NODE idle in sinfo" node_usable
}

cluster_answers() { node_usable && sacct -n -X --starttime=now >/dev/null 2>&1; }

up() {
    mkdir -p "$DIR"/{etc,log,pids,run,state/slurmctld,state/slurmd}
    chmod go+rx "$DIR"   # munged and mariadbd run as their own users and must reach their subfolders
    local name all_up=1
    for name in "${DAEMONS[@]}"; do [[ -n $(pid_of "$name") ]] || all_up=0; done
    if ((all_up)) && cluster_answers; then
        say "already up ($DIR); export SLURM_CONF=$SLURM_CONF"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "run as root: the daemons run as root, munge and mysql"
    install_packages
    [[ -n $(pid_of slurmctld) ]] || write_configs
    for name in "${DAEMONS[@]}"; do
        if [[ -z $(pid_of "$name") ]]; then "start_$name"; fi
    done
    wait_until slurmdbd "sacct" sacct -n -X --starttime=now
    say "up: node $NODE, $(nproc) CPUs, partitions: $(sinfo -h -o %P | paste -sd ' ')"
    say "export SLURM_CONF=$SLURM_CONF"
}

stop_daemon() {  # SIGTERM the recorded pid, wait up to 20 s, then SIGKILL
    local name=$1 pid i
    pid=$(pid_of "$name")
    if [[ -z $pid ]]; then rm -f "$DIR/pids/$name.pid"; return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 80; i++)); do
        [[ -n $(pid_of "$name") ]] || break
        sleep 0.25
    done
    if [[ -n $(pid_of "$name") ]]; then
        say "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/$name.pid"
    say "stopped $name (pid $pid)"
}

down() {
    [[ -d $DIR/pids ]] || { say "nothing recorded in $DIR; nothing to stop"; return 0; }
    # Cancel this cluster's jobs first, so no job step outlives slurmd.
    if [[ -n $(pid_of slurmctld) ]]; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.5; done
        fi
    fi
    local k
    for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do stop_daemon "${DAEMONS[k]}"; done
    say "down (state kept in $DIR)"
}

status() {
    local name pid ok=1
    for name in "${DAEMONS[@]}"; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then echo "$name: running (pid $pid)"; else echo "$name: not running"; ok=0; fi
    done
    if ((ok)) && cluster_answers; then
        echo "cluster: up ($DIR); export SLURM_CONF=$SLURM_CONF"
        sinfo
        return 0
    fi
    echo "cluster: not usable ($DIR)"
    return 3
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (folder: \$GATSCALE_SLURM_DIR, default /tmp/gatscale-slurm)" >&2; exit 2 ;;
esac
