#!/bin/bash
# Runs on each worker of a TPU VM, started there by jobs/tpu/train_pod.sh.
#
#   on_worker.sh LOG COMMAND...   runs COMMAND with its output in LOG, its exit code in LOG.exit
#   on_worker.sh --follow LOG     prints LOG as it grows until LOG.exit appears; exits with it
#
# COMMAND gets this worker's place in the slice from the metadata server, as the variables
# GKE sets (TPU_WORKER_ID, TPU_WORKER_HOSTNAMES): train.py starts multi-host JAX from them,
# eval.py, predict and export leave their outputs to worker 0 (unet_jax/launch.py).

set -u
if [[ ${1:-} == --follow ]]; then
    log=$2
    for ((waited = 0; waited < 120; waited += 2)); do # the command starts detached
        [[ -e $log ]] && break
        sleep 2
    done
    [[ -e $log ]] || { echo "error: no log $log on this worker: the command did not start" >&2; exit 2; }
    tail -n +1 -F "$log" 2>/dev/null &
    tail_pid=$!
    while [[ ! -s $log.exit ]]; do sleep 2; done
    sleep 1
    kill "$tail_pid"
    exit "$(cat "$log.exit")"
fi

log=$1
shift
metadata() {
    curl -sf -H Metadata-Flavor:Google \
        "http://${GCE_METADATA_IP:-metadata.google.internal}/computeMetadata/v1/instance/attributes/$1"
}
if [[ -z ${TPU_WORKER_HOSTNAMES:-} ]]; then
    TPU_WORKER_ID=$(metadata agent-worker-number)
    # "unknown:unknown:10.0.0.2,unknown:unknown:10.0.0.3": the addresses, in worker order.
    TPU_WORKER_HOSTNAMES=$(metadata worker-network-endpoints | tr , '\n' | awk -F: '{print $NF}' | paste -sd, -)
    export TPU_WORKER_ID TPU_WORKER_HOSTNAMES
fi
mkdir -p "$(dirname "$log")"
rm -f "$log.exit"
echo "worker ${TPU_WORKER_ID:-?} of ${TPU_WORKER_HOSTNAMES:-?}: $*" >"$log"
"$@" >>"$log" 2>&1
echo $? >"$log.exit"
