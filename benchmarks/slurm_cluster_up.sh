#!/usr/bin/env bash
# How long `slurm/testing/local-cluster.sh up` takes, in a fresh folder on its own ports:
#   1. first `up`: fresh state (and, with --purge, without the packages: they are purged and the
#      apt cache cleaned first, so `up` downloads and installs them; root only, stop other clusters first)
#   2. `up` again on the running cluster (the no-op)
#   3. `down`, then `up` with packages and state present (a restart)
#   4. `up` with the packages present in a fresh folder (a new CI machine that has the packages)
# Usage: benchmarks/slurm_cluster_up.sh [--purge]
set -euo pipefail
cd "$(dirname "$0")/.."

made_dir=
if [[ -z ${GATSCALE_SLURM_DIR:-} ]]; then made_dir=$(mktemp -d /tmp/gatscale-slurm-bench.XXXX); fi
export GATSCALE_SLURM_DIR=${GATSCALE_SLURM_DIR:-$made_dir}
export GATSCALE_SLURM_PORT=${GATSCALE_SLURM_PORT:-7817}
cluster=slurm/testing/local-cluster.sh
trap '$cluster down >/dev/null 2>&1 || true; [[ -n $made_dir ]] && rm -rf "$made_dir"' EXIT

if [[ ${1:-} == --purge ]]; then
    apt-get purge -y -q munge mariadb-server slurmdbd slurmctld slurmd slurm-client >/dev/null
    apt-get autoremove --purge -y -q >/dev/null
    apt-get clean
    echo "purged the packages and the apt cache"
fi

timed() {  # timed LABEL CMD...: run CMD, print its wall time
    local label=$1 start end
    shift
    start=$(date +%s.%N)
    "$@" >"$GATSCALE_SLURM_DIR/bench.log" 2>&1 || { cat "$GATSCALE_SLURM_DIR/bench.log" >&2; exit 1; }
    end=$(date +%s.%N)
    printf '%-42s %6.1f s\n' "$label" "$(echo "$end - $start" | bc)"
}

echo "folder $GATSCALE_SLURM_DIR, ports $GATSCALE_SLURM_PORT-$((GATSCALE_SLURM_PORT + 3)), $(nproc) CPUs"
timed "up (first run, fresh folder)" $cluster up
timed "up (already up: no-op)" $cluster up
timed "down" $cluster down
timed "up (packages and state present: restart)" $cluster up
$cluster down >/dev/null 2>&1 && find "$GATSCALE_SLURM_DIR" -mindepth 1 -delete
timed "up (packages present, fresh folder)" $cluster up
$cluster status >/dev/null && echo "cluster usable (sinfo, sacct)"
