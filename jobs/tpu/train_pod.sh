#!/bin/bash
# Trains (or evaluates) on every worker of a Cloud TPU VM, from this checkout's HEAD.
#
#   jobs/tpu/train_pod.sh --name NAME --zone ZONE [--project ID]
#       [--create TYPE [--version RUNTIME] [--spot] [--queued]] [--delete]
#       [--run train|eval|predict|export] [--dry-run] -- ARGS...
#
#   jobs/tpu/train_pod.sh --name pod1 --zone us-central2-b --create v4-16 --delete \
#       -- --config unet_jax/configs/demo.py --workdir gs://BUCKET/runs/demo
#
# In order: creates the TPU VM (--create; --queued: as a queued resource, waiting until
# it is ACTIVE), copies `git archive HEAD` to every worker, runs the README's set-up there
# (Python 3.11 venv, `pip install -c constraints.txt -e .[gcs] jax[tpu]`), starts the same
# command on every worker (nohup: it survives this script), streams worker 0's log until
# the command ends, and with --delete deletes the TPU VM. Exits with worker 0's exit code
# (143: preempted, state saved: run the same command again to resume).
#
# train.py on every worker forms one run: each worker exports TPU_WORKER_ID and
# TPU_WORKER_HOSTNAMES from its metadata server, and train.py starts multi-host JAX from
# them. eval.py, predict and export (--run) are started the same way: worker 0 writes the
# outputs, the others exit at once; they run on worker 0's CPUs (EVAL_PLATFORMS, default
# cpu), since they are one process and a multi-host slice's TPUs start only all together.
# The workdir must be a gs:// path: the workers share no disk (docs/CLOUD_STORAGE.md).
# --dry-run prints every command (one per line, shell-quoted) instead of running it.
# docs/CLUSTER.md.

set -euo pipefail

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
fail() {
    echo "error: $*" >&2
    exit 2
}

NAME="" ZONE="" PROJECT="" CREATE="" VERSION="tpu-ubuntu2204-base" SPOT=0 QUEUED=0 DELETE=0
RUN="train" DRY_RUN=0 EXTRAS=${EXTRAS:-gcs} EVAL_PLATFORMS=${EVAL_PLATFORMS:-cpu}
value() { # OPTION VALUE: the option's value, or exit 2 when it has none
    [[ $# -ge 2 && -n $2 && $2 != --* ]] || fail "$1 needs a value"
    printf '%s' "$2"
}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --name | --zone | --project | --create | --version | --run)
        val=$(value "$@") || exit 2
        case "$1" in
        --name) NAME=$val ;; --zone) ZONE=$val ;; --project) PROJECT=$val ;;
        --create) CREATE=$val ;; --version) VERSION=$val ;; --run) RUN=$val ;;
        esac
        shift 2
        ;;
    --spot) SPOT=1; shift ;;
    --queued) QUEUED=1; shift ;;
    --delete) DELETE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) fail "unknown option $1 (the command's own arguments go after --)" ;;
    esac
done
[[ -n "$NAME" && -n "$ZONE" ]] || fail "--name and --zone are required"
case "$RUN" in
train) ENTRY=(train.py) ;;
eval) ENTRY=(eval.py) ;;
predict) ENTRY=(-m unet_jax.predict) ;;
export) ENTRY=(-m unet_jax.export) ;;
*) fail "--run $RUN: choose train, eval, predict or export" ;;
esac
workdir=""
for ((i = 1; i <= $#; i++)); do
    arg=${!i}
    if [[ $arg == --workdir=* ]]; then
        workdir=${arg#--workdir=}
    elif [[ $arg == --workdir && $i -lt $# ]]; then
        j=$((i + 1))
        workdir=${!j}
    fi
done
if [[ $RUN != predict || -n "$workdir" ]]; then
    [[ $workdir == gs://* ]] || fail "--workdir '$workdir': a TPU VM's workers share no disk, give a gs:// path"
fi

REPO=$(cd "$(dirname "$0")/../.." && pwd)
STAMP=$(date -u +%Y%m%d-%H%M%S)
TARBALL=${TMPDIR:-/tmp}/unet-jax-$STAMP.tar.gz
LOG="\$HOME/unet-jax-logs/$RUN-$STAMP.log" # $HOME: the worker's
LOCATION=(--zone="$ZONE")
[[ -z "$PROJECT" ]] || LOCATION+=(--project="$PROJECT")

# Runs a command, or with --dry-run prints it shell-quoted on one line.
step() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '%q ' "$@" | sed 's/ $//'
        echo
    else
        echo "+ $*" >&2
        "$@"
    fi
}
on_workers() { # WORKERS COMMAND
    step gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" --worker="$1" --command="$2"
}

# At the end, whatever happened before: --delete deletes the TPU VM (a failed set-up must
# not leave it running), and the archive goes.
finish() {
    local rc=$?
    rm -f "$TARBALL"
    if [[ $DELETE -eq 1 && $QUEUED -eq 1 ]]; then
        step gcloud compute tpus queued-resources delete "$NAME" "${LOCATION[@]}" --force --quiet || true
    elif [[ $DELETE -eq 1 ]]; then
        step gcloud compute tpus tpu-vm delete "$NAME" "${LOCATION[@]}" --quiet || true
    fi
    exit "$rc"
}
trap finish EXIT

if [[ -n "$CREATE" ]]; then
    spot=()
    [[ $SPOT -eq 0 ]] || spot=(--spot)
    if [[ $QUEUED -eq 1 ]]; then
        step gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" \
            "${LOCATION[@]}" --accelerator-type="$CREATE" --runtime-version="$VERSION" "${spot[@]}"
        state=""
        while [[ $state != ACTIVE ]]; do
            state=$(step gcloud compute tpus queued-resources describe "$NAME" "${LOCATION[@]}" \
                --format="value(state.state)")
            [[ $DRY_RUN -eq 0 ]] || { echo "$state"; break; }
            case "$state" in
            FAILED | SUSPENDED) fail "queued resource $NAME is $state" ;;
            ACTIVE) ;;
            *) echo "queued resource $NAME: ${state:-?}, waiting" >&2; sleep 30 ;;
            esac
        done
    else
        step gcloud compute tpus tpu-vm create "$NAME" "${LOCATION[@]}" \
            --accelerator-type="$CREATE" --version="$VERSION" "${spot[@]}"
    fi
fi

if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    echo "note: uncommitted changes are not sent: the workers get HEAD" >&2
fi
step git -C "$REPO" archive --format=tar.gz -o "$TARBALL" HEAD
step gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:unet-jax.tar.gz" "${LOCATION[@]}" --worker=all

# The README's set-up. The .venv stays between launches (pip only adds what is missing).
SETUP="set -e; mkdir -p unet-jax; find unet-jax -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +; \
tar -xzf unet-jax.tar.gz -C unet-jax; cd unet-jax; \
command -v python3.11 >/dev/null || { sudo apt-get update -q; sudo apt-get install -y -q python3.11 python3.11-venv; }; \
[ -x .venv/bin/python ] || python3.11 -m venv .venv; \
.venv/bin/pip install -q -c constraints.txt -e '.[$EXTRAS]' 'jax[tpu]'"
on_workers all "$SETUP"

# The same command on every worker, detached (setsid nohup: it outlives the ssh session).
platforms=""
[[ $RUN == train ]] || platforms="JAX_PLATFORMS=$EVAL_PLATFORMS "
command=$(printf ' %q' .venv/bin/python -u "${ENTRY[@]}" "$@")
on_workers all "cd unet-jax && ${platforms}setsid nohup bash jobs/tpu/on_worker.sh $LOG$command >/dev/null 2>&1 </dev/null &"

# Worker 0's log until its command ends; then its exit code.
rc=0
on_workers 0 "bash unet-jax/jobs/tpu/on_worker.sh --follow $LOG" || rc=$?

[[ $rc -ne 143 ]] || echo "preempted, state saved in $workdir: run the same command again to resume" >&2
exit "$rc"
