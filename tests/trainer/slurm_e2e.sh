#!/usr/bin/env bash
# scripts/slurm/train.sbatch on a real Slurm: a one-node cluster on localhost (slurmctld, slurmd
# and munge from Debian, installed when missing), the script submitted as the README says.
#   slurm_e2e.sh RINGTRAIN_BINARY
# Checks: a 2-rank sp = 2 run completes; `scontrol requeue` of a running job makes the ranks
# save, and the requeued job resumes from that checkpoint (--resume=auto); `scancel
# --signal=TERM` makes them save and the job end. Exits 77 (a skip) with a message where Slurm
# cannot be installed or started here; once it runs, every check counts.
set -uo pipefail

bin=$(readlink -f "$1")
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-slurm.XXXXXX")
export OMP_NUM_THREADS=1
skip() { echo "SKIP: $*" >&2; exit 77; }
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() { if ! eval "$1"; then fail "$2"; fi; }

# ---- A one-node cluster -------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root to start slurmctld, slurmd and munged"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
  ! command -v munged >/dev/null; then
  packages=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${packages[@]}" >"$work/apt.log" 2>&1 ||
    { apt-get update >>"$work/apt.log" 2>&1 &&
      apt-get install -y --no-install-recommends "${packages[@]}" >>"$work/apt.log" 2>&1; } ||
    skip "cannot install ${packages[*]}: $(tail -1 "$work/apt.log")"
fi

pids=()
cleanup() {
  for job in $(squeue -h -o %i 2>/dev/null); do scancel "$job" 2>/dev/null; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  if [ -n "${RINGTRAIN_KEEP_WORK:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

mkdir -p "$work/munge" "$work/state" "$work/spool"
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
socket=$work/munge/munge.socket
munged --force --key-file="$work/munge/munge.key" --socket="$socket" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
  --seed-file="$work/munge/munged.seed" >/dev/null 2>&1 || skip "munged does not start: $(tail -2 "$work/munge/munged.log" 2>/dev/null)"
pids+=("$(cat "$work/munge/munged.pid")")

host=$(hostname -s)
cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
[ "$cpus" -ge 2 ] || skip "the test's 2-rank job needs 2 CPUs, this machine has $cpus"
port=$((20000 + RANDOM % 20000))
cat >"$work/slurm.conf" <<EOF
ClusterName=ringtrain
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
KillWait=60
MinJobAge=600
NodeName=$host CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 1 60); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && { up=1; break; }
  sleep 0.5
done
[ $up -eq 1 ] || skip "the local Slurm did not come up: $(tail -2 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null | tr '\n' ' ')"
echo "slurm: node $host idle (port $port)"

# ---- Data and recipe --------------------------------------------------------------------------
cd "$work" || exit 1
for i in $(seq 1 400); do echo "the quick brown fox number $((i % 17)) jumps over the lazy dog."; done >text.txt
"$bin" data import --out corpus.h5 text.txt >/dev/null || { fail "data import"; exit 1; }
cat >recipe.yaml <<EOF
run: {name: slurm, out_dir: $work/run, seed: 3}
model: {pattern: "*-", d_model: 64, heads: 4}
data: {corpus: $work/corpus.h5, seq_len: 64}
train: {steps: 12, tokens_per_step: 512}
schedule: {warmup_steps: 2}
checkpoint: {every: 0}
log: {every: 4, peak_gflops: 100}
EOF

# Submits as the README says, from the repository. When the binary under test is the one the
# script finds by itself (build/ringtrain of the repository, as in CI), nothing tells it where;
# a binary built elsewhere is named by RINGTRAIN_BIN.
if [ "$bin" = "$(readlink -f "$repo/build/ringtrain" 2>/dev/null)" ]; then
  unset RINGTRAIN_BIN RINGTRAIN_REPO
else
  export RINGTRAIN_BIN=$bin
  echo "slurm: RINGTRAIN_BIN=$bin (not the repository's build/ringtrain)"
fi
submit() {
  (cd "$repo" && sbatch --parsable --requeue --chdir="$work" --output="$work/%j.out" \
    --export=ALL scripts/slurm/train.sbatch "$work/recipe.yaml" "$@")
}
state_of() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}
finished() { case $(state_of "$1") in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) return 0 ;; esac; return 1; }
steps_logged() { [ -f "$1/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$1/metrics.jsonl")" -ge "$2" ]; }

# 1. A 2-rank sp = 2 run completes.
job=$(submit --set parallel.sp=2) || { fail "sbatch: $job"; exit 1; }
wait_for 180 finished "$job" || fail "job $job did not finish in 180 s (state $(state_of "$job"))"
check '[ "$(state_of "$job")" = COMPLETED ]' "job $job: $(state_of "$job"): $(tail -3 "$job.out")"
check 'grep -q "world 2 = dp 1 x sp 2" "$job.out" && grep -q "^done: 12 steps" "$job.out"' "sp = 2 run: $(grep -E "world|done|error" "$job.out")"

# 2. A requeue saves and the job resumes; 3. scancel --signal=TERM saves and ends it.
job=$(submit --set train.steps=1000000 --set run.out_dir="$work/long") || { fail "sbatch: $job"; exit 1; }
wait_for 120 steps_logged long 3 || fail "job $job: no progress in 120 s: $(tail -3 "$job.out")"
scontrol requeue "$job" || fail "scontrol requeue $job"
# Slurm holds a requeued job for two minutes (its EligibleTime); the test does not wait for it.
wait_for 60 eval '[ "$(state_of "$job")" = PENDING ]' && scontrol update JobId="$job" StartTime=now
wait_for 240 grep -q "resumed from .*step-[0-9]*.h5 at step" "$job.out" ||
  fail "job $job did not resume after the requeue: $(grep -E "stop|checkpoint|resumed|error" "$job.out" | tail -5)"
first=$(grep -o "resumed from .* at step [0-9]*" "$job.out" | grep -o "[0-9]*$" | head -1)
check '[ -n "$first" ] && [ "$first" -ge 3 ]' "the requeue's checkpoint is at step ${first:-none}, expected >= 3"
wait_for 120 steps_logged long $((${first:-0} + 3)) || fail "job $job: no progress after the resume"
scancel --signal=TERM "$job" || fail "scancel --signal=TERM $job"
wait_for 120 finished "$job" || fail "job $job did not end after SIGTERM (state $(state_of "$job"))"
check '[ "$(grep -c "stop signal received" "$job.out")" -eq 2 ]' "two saves on a signal: $(grep -E "stop|checkpoint" "$job.out")"
last=$(sed -n 's/^step-0*\([0-9]*\)\.h5$/\1/p' long/checkpoints/latest 2>/dev/null)
check '[ -n "$last" ] && [ "$last" -gt "${first:-0}" ]' "the checkpoint after SIGTERM (${last:-none}) is past the requeue's (${first:-none})"

if [ $failures -ne 0 ]; then
  echo "slurm logs:" >&2
  tail -5 "$work/slurmctld.log" "$work/slurmd.log" >&2
  echo "slurm_e2e: $failures check(s) failed" >&2
  exit 1
fi
echo "slurm_e2e: all checks passed"
