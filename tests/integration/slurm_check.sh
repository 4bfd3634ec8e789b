#!/usr/bin/env bash
# Run the workflow against a real, single-node SLURM cluster started on this machine.
#
#   bash tests/integration/slurm_check.sh
#
# Needs root (slurmd runs jobs as the submitting user and the daemons run as root here)
# and Debian's `slurm-wlm` and `munge` packages (apt-get install slurm-wlm munge).
# It starts munged, slurmctld and slurmd on localhost with a slurm.conf written into a
# temporary directory (non-default ports, nothing under /etc is touched), then:
#   1. runs the tiny workflow config of tests/test_workflow.py with --profile
#      profiles/slurm (plus an overlay that shrinks the profile's threads and memory to fit
#      this node; executor, runtimes, partitions and gres are the profile's), account and
#      partitions given through GENESEL_SLURM_ACCOUNT/_PARTITION/_GPU_PARTITION;
#   2. checks that every job of the run was an sbatch submission that SLURM records as
#      COMPLETED, with the expected account, partition and gres (GPU rules only), and
#      that each left its log in .snakemake/slurm_logs;
#   3. submits one job with the GENESEL_SLURM_* variables empty (cluster defaults);
#   4. runs the same config with --profile profiles/local (beside step 1) and checks that
#      the report tables (runs.tsv, curves.tsv) are equal (numbers to rtol 1e-6).
# Daemons and temporary files are removed on exit. The last line is PASS or FAIL.
# Environment: GENESEL_PYTHON (default: .venv/bin/python, else python3 on PATH),
# GENESEL_SLURM_KEEP=1 keeps the temporary directory for inspection, GENESEL_SLURM_TIMEOUT
# (default 900) bounds each Snakemake run in seconds.
set -euo pipefail

START=$(date +%s)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${GENESEL_PYTHON:-}
if [[ -z $PY ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python; else PY=$(command -v python3); fi
fi
BIN=$(dirname "$PY")
SNAKEMAKE=$BIN/snakemake
WORK=$(mktemp -d "${TMPDIR:-/tmp}/genesel-slurm.XXXXXX")
chmod 755 "$WORK"
PIDS=()
STAGE=setup
TIMEOUT=${GENESEL_SLURM_TIMEOUT:-900}

log() { printf '[slurm-check %4ds] %s\n' "$(($(date +%s) - START))" "$*"; }

finish() {
  local rc=$?
  set +e
  if ((rc != 0)); then
    log "failed during: $STAGE (exit $rc)"
    for f in "$WORK"/log/*.log "$WORK"/log/*.out; do
      [[ -s $f ]] && { echo "---- last lines of $f"; tail -n 30 "$f"; }
    done
  fi
  [[ -n ${SLURM_CONF:-} && -f ${SLURM_CONF:-} ]] && scancel --full --user "$(id -un)" >/dev/null 2>&1
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [[ ${GENESEL_SLURM_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  local elapsed=$(($(date +%s) - START))
  echo "SLURM check elapsed: ${elapsed}s"
  if ((rc == 0)); then echo "SLURM check: PASS"; else echo "SLURM check: FAIL"; fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || { log "needs root: slurmd runs the jobs and the daemons start as root"; exit 2; }
for tool in munged slurmctld slurmd sbatch squeue scontrol; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin
  command -v "$tool" >/dev/null || { log "$tool not found: apt-get install slurm-wlm munge"; exit 2; }
done
[[ -x $SNAKEMAKE ]] || { log "no snakemake next to $PY"; exit 2; }
"$PY" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null || {
  log "snakemake-executor-plugin-slurm is not installed for $PY"; exit 2; }

# ---------------------------------------------------------------- daemons
STAGE="starting munged"
mkdir -p "$WORK"/{munge,state,spool,log,run}
chmod 700 "$WORK/munge"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
MUNGE_SOCKET=$WORK/munge/munge.socket
munged --force --foreground --socket="$MUNGE_SOCKET" --key-file="$WORK/munge/munge.key" \
  --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/munged.seed" \
  --log-file="$WORK/log/munged.log" >>"$WORK/log/munged.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
[[ -S $MUNGE_SOCKET ]] || { log "munged did not start"; exit 1; }

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
NODE=$(uname -n | cut -d. -f1)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
PARTITION=genesel
GPU_PARTITION=genesel-gpu

# One node with this machine's cores and 90% of its memory, and one GPU "gres" without a
# device file, so that the profile's gres=gpu:1 requests are scheduled (the jobs still run
# on the CPU). No accounting daemon: squeue (MinJobAge=3600) answers the status queries.
cat >"$WORK/gres.conf" <<CONF
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null Count=1
CONF
cat >"$WORK/slurm.conf" <<CONF
ClusterName=genesel
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=$NODE MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$WORK/slurm.conf
# Inside a job, snakemake-executor-plugin-slurm-jobstep runs the rule with a nested `srun`
# whose environment it strips of every SLURM_* variable but the job's identity, SLURM_CONF
# included; real clusters keep slurm.conf at /etc/slurm or serve it "configless". This
# cluster's config lives in $WORK, so an `srun` first on PATH (which the jobs inherit) puts
# SLURM_CONF back.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/srun" <<SH
#!/bin/sh
SLURM_CONF=$SLURM_CONF exec $(command -v srun) "\$@"
SH
chmod 755 "$WORK/bin/srun"

STAGE="starting slurmctld"
slurmctld -D -i -f "$SLURM_CONF" >"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || { log "slurmctld does not answer"; exit 1; }

log "slurmctld up"
STAGE="starting slurmd"
slurmd -D -f "$SLURM_CONF" -N "$NODE" >"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.2
done
[[ $state == idle ]] || { log "node $NODE is '$state', not idle"; sinfo -R; exit 1; }
log "SLURM $(sinfo -V | awk '{print $2}') up: node $NODE ($CPUS CPUs, $MEM_MB MB, gpu:1), partitions $PARTITION, $GPU_PARTITION"

STAGE="smoke job"
smoke=$(sbatch --parsable -p "$PARTITION" --gres=gpu:1 --mem=100 -o "$WORK/log/smoke.out" --wrap 'echo ok')
for _ in $(seq 100); do
  s=$(squeue -h -j "$smoke" -t all -o %T 2>/dev/null || true)
  [[ $s == COMPLETED || $s == FAILED || $s == CANCELLED ]] && break
  sleep 0.2
done
[[ $s == COMPLETED ]] || { log "smoke job $smoke is '$s'"; exit 1; }
log "smoke job $smoke: $s"

# ---------------------------------------------------------------- the workflow on SLURM
export PATH=$WORK/bin:$BIN:$PATH PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export GENESEL_SLURM_ACCOUNT=genesel-check GENESEL_SLURM_PARTITION=$PARTITION GENESEL_SLURM_GPU_PARTITION=$GPU_PARTITION
mkdir -p "$WORK/slurm-run" "$WORK/local-run" "$WORK/overlay"
# The tiny config of tests/test_workflow.py; an overlay profile shrinks profiles/slurm's
# threads and memory to this node (one thread and an equal share of memory per job, like
# profiles/local) and keeps everything else: executor, runtime, partitions, gres.
"$PY" - "$REPO" "$WORK" "$CPUS" "$MEM_MB" <<'PYEOF'
import sys
from pathlib import Path

import yaml

repo, work, cpus, mem = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo))
from tests.test_workflow import TINY_CONFIG

for run in ("slurm-run", "local-run"):
    (work / run / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
share = mem // cpus
overlay = {
    "default-resources": {**profile["default-resources"], "mem_mb": min(profile["default-resources"]["mem_mb"], share)},
    "set-threads": {rule: 1 for rule in profile.get("set-threads", {})},
    "set-resources": {
        rule: {**res, **({"mem_mb": min(res["mem_mb"], share)} if "mem_mb" in res else {})}
        for rule, res in profile.get("set-resources", {}).items()
    },
}
(work / "overlay" / "config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
PYEOF
log "overlay on profiles/slurm: $(tr '\n' ' ' <"$WORK/overlay/config.yaml" | tr -s ' ')"

# The local run goes beside the SLURM run: both are mostly waiting (job start-up, polling).
timeout "$TIMEOUT" "$SNAKEMAKE" --snakefile "$REPO/Snakefile" --directory "$WORK/local-run" \
  --configfile "$WORK/local-run/config.yaml" --profile "$REPO/profiles/local" --cores "$CPUS" \
  >"$WORK/log/snakemake-local.out" 2>&1 &
LOCAL_PID=$!
PIDS+=("$LOCAL_PID")

STAGE="workflow run on SLURM"
t0=$(date +%s)
( cd "$WORK/slurm-run" &&
  timeout "$TIMEOUT" "$SNAKEMAKE" --snakefile "$REPO/Snakefile" --configfile config.yaml \
    --profile "$REPO/profiles/slurm" --profile "$WORK/overlay" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    --slurm-keep-successful-logs --latency-wait 10 ) >"$WORK/log/snakemake-slurm.out" 2>&1 || {
  tail -n 60 "$WORK/log/snakemake-slurm.out"; exit 1; }
log "SLURM run finished in $(($(date +%s) - t0))s"

# Empty GENESEL_SLURM_* variables leave account and partition to the cluster: one job.
STAGE="one job with empty GENESEL_SLURM_* variables"
mkdir -p "$WORK/default-run" && cp "$WORK/slurm-run/config.yaml" "$WORK/default-run/"
( cd "$WORK/default-run" &&
  GENESEL_SLURM_ACCOUNT= GENESEL_SLURM_PARTITION= GENESEL_SLURM_GPU_PARTITION= \
  timeout "$TIMEOUT" "$SNAKEMAKE" --snakefile "$REPO/Snakefile" --configfile config.yaml \
    --profile "$REPO/profiles/slurm" --profile "$WORK/overlay" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    results/tiny/data/compendium.h5ad ) >"$WORK/log/snakemake-default.out" 2>&1 || {
  tail -n 60 "$WORK/log/snakemake-default.out"; exit 1; }
default_job=$(sed -n 's/.*submitted with SLURM jobid \([0-9]*\).*/\1/p' "$WORK/log/snakemake-default.out")
[[ -n $default_job ]] || { log "no sbatch submission with empty GENESEL_SLURM_* variables"; exit 1; }
read -r default_state default_partition < <(squeue -h -t all -j "$default_job" -o '%T %P')
[[ $default_state == COMPLETED && $default_partition == "$PARTITION" ]] || {
  log "job $default_job with empty GENESEL_SLURM_* variables: $default_state in $default_partition"; exit 1; }
log "empty GENESEL_SLURM_* variables: job $default_job $default_state in the default partition $default_partition"

STAGE="workflow run with profiles/local"
wait "$LOCAL_PID" || { tail -n 60 "$WORK/log/snakemake-local.out"; exit 1; }
log "local run (started beside the SLURM run) took $(sed -n 's/^Elapsed time: //p' "$WORK/log/snakemake-local.out" | tail -n 1)"

STAGE="checks"
squeue -h -t all -o '%i|%j|%T|%P|%a|%b|%k' >"$WORK/squeue.txt"
"$PY" - "$WORK" <<'PYEOF'
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

work = Path(sys.argv[1])
out = (work / "log" / "snakemake-slurm.out").read_text()
failures = []

# Every job Snakemake ran (but the target rule `all`, which has nothing to run) went through sbatch.
submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
ran = {}
for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?(?:rule|checkpoint) )", out):
    m = re.search(r"^(local)?(?:rule|checkpoint) (\w+):(?:\n    .*)*?\n    jobid: (\d+)", block, re.M)
    if m:
        ran[m.group(3)] = (m.group(2), bool(m.group(1)))
remote = {job: rule for job, (rule, local) in ran.items() if rule != "all"}
if not remote:
    failures.append("found no jobs in the Snakemake log")
missing = sorted(set(remote) - set(submitted), key=int)
if missing:
    failures.append(f"jobs not submitted with sbatch: {[remote[j] for j in missing]}")

records = {}
for line in (work / "squeue.txt").read_text().splitlines():
    jobid, name, state, partition, account, gres, comment = line.split("|", 6)
    records[jobid] = dict(name=name, state=state, partition=partition, account=account, gres=gres, comment=comment)
uuids = set(re.findall(r"--job-name ['\"]?([0-9a-f-]{36})", out)) | {
    r["name"] for i, r in records.items() if i in set(submitted.values())}
if len(uuids) != 1:
    failures.append(f"expected one SLURM job name (the run's id) for the workflow's jobs, got {uuids}")
by_rule = {}
for job, slurm_id in submitted.items():
    rec = records.get(slurm_id)
    rule = remote.get(job, "?")
    by_rule[rule] = by_rule.get(rule, 0) + 1
    if rec is None:
        failures.append(f"SLURM has no record of job {slurm_id} ({rule})")
        continue
    if not rec["comment"].startswith(f"rule_{rule}"):
        failures.append(f"SLURM job {slurm_id} has comment {rec['comment']!r}, not rule_{rule}...")
    if rec["state"] != "COMPLETED":
        failures.append(f"SLURM job {slurm_id} ({rule}) is {rec['state']}")
    if rec["account"] != "genesel-check":
        failures.append(f"SLURM job {slurm_id} ({rule}) ran under account {rec['account']!r}")
    gpu = rule in ("train_panel", "fit_imputer")
    want = "genesel-gpu" if gpu else "genesel"
    if rec["partition"] != want:
        failures.append(f"SLURM job {slurm_id} ({rule}) ran in partition {rec['partition']!r}, not {want!r}")
    if gpu != ("gpu" in rec["gres"]):
        failures.append(f"SLURM job {slurm_id} ({rule}) has gres {rec['gres']!r}")
logs = list((work / "slurm-run" / ".snakemake" / "slurm_logs").rglob("*.log"))
if len(logs) != len(submitted):
    failures.append(f"{len(logs)} files in .snakemake/slurm_logs for {len(submitted)} submissions")
print(f"sbatch submissions: {len(submitted)} of {len(remote)} jobs "
      + ", ".join(f"{r}={n}" for r, n in sorted(by_rule.items()))
      + f"; SLURM records COMPLETED: {sum(records.get(s, {}).get('state') == 'COMPLETED' for s in submitted.values())}")

# The report's tables equal the local run's.
for table in ("runs.tsv", "curves.tsv"):
    a = pd.read_csv(work / "slurm-run" / "results" / "tiny" / "report" / table, sep="\t")
    b = pd.read_csv(work / "local-run" / "results" / "tiny" / "report" / table, sep="\t")
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        failures.append(f"{table}: shape/columns differ: {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}")
        continue
    keys = [c for c in a.columns if not pd.api.types.is_float_dtype(a[c])]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    numeric = [c for c in a.columns if c not in keys]
    for c in keys:
        if not a[c].equals(b[c]):
            failures.append(f"{table}: column {c} differs")
    worst = 0.0
    for c in numeric:
        x, y = a[c].to_numpy(float), b[c].to_numpy(float)
        if not np.allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True):
            failures.append(f"{table}: column {c} differs: {x} vs {y}")
        finite = np.isfinite(x) & np.isfinite(y)
        if finite.any():
            worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]))))
    print(f"{table}: {len(a)} rows, {len(numeric)} numeric columns equal to the local run's (max |diff| {worst:.3g})")

if failures:
    print("\n".join(f"FAILED: {f}" for f in failures))
    sys.exit(1)
PYEOF
