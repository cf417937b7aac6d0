#!/usr/bin/env bash
# Cloud TPU VM / pod slice launcher for lm_jax. Run with --help for the documentation.
set -euo pipefail

PROG=tpu_pod.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_common.sh
. "$SCRIPT_DIR/_common.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [OPTIONS] COMMAND [-- LM_JAX_ARGS...]

Creates a Cloud TPU VM (a single host or a multi-host pod slice), installs lm_jax on every worker
and runs `python -m lm_jax.main` on all workers at once. Every worker runs the same command; on
a multi-host slice it gets --auto_distributed, and jax.distributed finds the other workers itself.

A gs://BUCKET/PATH workdir is mounted on every worker with Cloud Storage FUSE (gcsfuse) at
~/gcs/BUCKET, and lm_jax gets the mounted path, --workdir=$HOME/gcs/BUCKET/PATH: lm_jax writes
its checkpoints with Orbax but everything else (metrics, data, bank, index, eval report) with
plain file I/O, so it takes no gs:// URL.

Commands:
  create   gcloud compute tpus tpu-vm create NAME (skipped when NAME already exists and is READY)
  setup    on every worker (--worker=all): install Cloud Storage FUSE (gcsfuse, from Google's apt
           repository; skipped where it is installed), fetch the repository (git clone of a URL,
           or a copy of a local directory via scp), create a Python venv and pip-install jax[tpu]
           and lm_jax
  run      mount the gs:// WORKDIR's bucket on every worker (unless mounted already), then start
           `python -m lm_jax.main --config=CONFIG --workdir=$HOME/gcs/BUCKET/PATH --mode=MODE` on all
           workers, detached (it survives this terminal), then follow the logs: worker 0 is shown
           here and every worker's log is written to LOG_DIR/worker-<i>.log. Ctrl-C stops following,
           not the run. Re-running the same command after a preemption resumes from WORKDIR.
  logs     follow the logs of the current or last run again (same files as run)
  stop     stop the run on every worker (SIGTERM, then SIGKILL after 30 s)
  status   describe the TPU and show, per worker, whether the run is going or how it ended
  delete   delete the TPU VM (asks for confirmation unless --yes)
  all      create, setup, then run

Options (each can also be set by the environment variable in brackets; flags win):
  --project ID           Google Cloud project                                   [PROJECT]
  --zone ZONE            zone, e.g. us-east5-a (v5p) or us-central2-b (v4)      [ZONE]
  --name NAME            TPU VM name (default: lm-jax)                          [TPU_NAME]
  --accelerator TYPE     accelerator type, e.g. v5p-32, v4-64, v5litepod-16, v6e-16
                         (default: v5p-32)                                      [ACCELERATOR]
  --version VERSION      TPU runtime image (default by accelerator: v4/v3/v2: tpu-ubuntu2204-base,
                         v5p: v2-alpha-tpuv5, v5litepod: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e)
                                                                                [RUNTIME_VERSION]
  --spot                 create a Spot TPU VM (cheaper; can be preempted)       [SPOT=1]
  --preemptible          create a preemptible TPU VM (the older model)          [PREEMPTIBLE=1]
  --workdir gs://B/P     checkpoints, exports, indexes, eval results. Must be gs:// on multi-host
                         slices (every worker writes to it); run mounts bucket B at ~/gcs/B on
                         every worker and passes --workdir=$HOME/gcs/B/P        [WORKDIR]
  --config PATH[:ARG]    config file, relative to the repository (default: configs/hotpotqa.py)
                                                                                [CONFIG]
  --mode MODE            train|export|index|eval|all|ask (default: all)         [MODE]
  --repo-source SRC      what `setup` installs: a git URL (cloned on every worker) or a local
                         directory (packed with tar, copied with scp). Default: this repository,
                         i.e. the directory above launch/                       [REPO_SOURCE]
  --repo-ref REF         branch, tag or commit to check out after a git clone   [REPO_REF]
  --jax-spec SPEC        pip requirement for JAX (default: 'jax[tpu]')          [JAX_SPEC]
  --python-version V     Python for the workers' venv; fetched by uv when the image lacks it
                         (default: 3.11)                                        [PYTHON_VERSION]
  --extra-args STR       extra lm_jax.main arguments, inserted verbatim in the remote shell
                         command (e.g. '--config.total_steps=100'). Arguments after `--` are
                         passed too, each quoted.                               [EXTRA_ARGS]
  --num-workers N        number of TPU VM hosts; by default read from the TPU
                         (gcloud describe), or, under --dry-run, derived from --accelerator
                                                                                [NUM_WORKERS]
  --follow-workers LIST  workers whose logs run/logs follow: all, or e.g. 0,1 (default: all;
                         each costs one gcloud ssh process here)                [FOLLOW_WORKERS]
  --log-dir DIR          local directory for the per-worker logs (default: launch_logs/NAME)
                                                                                [LOG_DIR]
  --detach               run: start the run and return without following the logs
  --yes                  delete: do not ask for confirmation
  --dry-run              print every command that would run (gcloud, tar, mkdir; one per line,
                         quoted: the output is a shell script), run nothing, exit 0   [DRY_RUN=1]
  -h, --help             show this help

Environment only:
  SSH_FLAGS      extra flags for every gcloud ssh/scp call, e.g. '--internal-ip'
  CREATE_FLAGS   extra flags for gcloud create, e.g. '--network=NET --subnetwork=SUB'
  REMOTE_DIR     repository directory on the workers, relative to the home (default: lm_jax)
  REMOTE_VENV    venv directory on the workers, relative to the home (default: lm_jax_venv)
  REMOTE_ENV     shell assignments put before the command on every worker, verbatim,
                 e.g. 'HF_HOME=/mnt/disk/hf TF_CPP_MIN_LOG_LEVEL=2'
  GCSFUSE_FLAGS  gcsfuse flags for the mount; replace the default
                 '--implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0
                 --metadata-cache-negative-ttl-secs=0' (empty: gcsfuse's own defaults)

On every worker, the run's log, pid and exit status are in ~/lm_jax_run/{log,pid,rc}.

Examples:
  # The paper config on a v5p-32 (4 hosts), Spot, from this checkout:
  PROJECT=my-proj ZONE=us-east5-a launch/tpu_pod.sh --accelerator v5p-32 --spot \
      --workdir gs://my-bucket/lm_jax/hotpotqa all
  # See the whole command sequence first:
  PROJECT=my-proj ZONE=us-east5-a launch/tpu_pod.sh --workdir gs://my-bucket/run --dry-run all
  # Only training, more steps, on an existing v4-64:
  launch/tpu_pod.sh --project my-proj --zone us-central2-b --accelerator v4-64 \
      --workdir gs://my-bucket/run --mode train run -- --config.total_steps=20000
  # Done: delete it
  launch/tpu_pod.sh --project my-proj --zone us-east5-a delete
EOF
}

# ------------------------------------------------------------------------------------- settings

PROJECT=${PROJECT:-}
ZONE=${ZONE:-}
TPU_NAME=${TPU_NAME:-lm-jax}
ACCELERATOR=${ACCELERATOR:-v5p-32}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
SPOT=${SPOT:-0}
PREEMPTIBLE=${PREEMPTIBLE:-0}
WORKDIR=${WORKDIR:-}
CONFIG=${CONFIG:-configs/hotpotqa.py}
MODE=${MODE:-all}
REPO_SOURCE=${REPO_SOURCE:-}
REPO_REF=${REPO_REF:-}
JAX_SPEC=${JAX_SPEC:-jax[tpu]}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
EXTRA_ARGS=${EXTRA_ARGS:-}
NUM_WORKERS=${NUM_WORKERS:-}
FOLLOW_WORKERS=${FOLLOW_WORKERS:-all}
LOG_DIR=${LOG_DIR:-}
SSH_FLAGS=${SSH_FLAGS:-}
CREATE_FLAGS=${CREATE_FLAGS:-}
REMOTE_DIR=${REMOTE_DIR:-lm_jax}
REMOTE_VENV=${REMOTE_VENV:-lm_jax_venv}
REMOTE_ENV=${REMOTE_ENV:-}
# Orbax commits a checkpoint on a local path by renaming its temporary directory, which gcsfuse
# refuses on a flat bucket unless the directory has fewer descendants than --rename-dir-limit.
# No metadata caching: every worker must see at once what another one wrote.
GCSFUSE_FLAGS=${GCSFUSE_FLAGS-"--implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0 --metadata-cache-negative-ttl-secs=0"}
DETACH=0
YES=0
COMMAND=""
PASSTHROUGH=()

# Paths on the workers are written in the remote shell's syntax: '~' expands there, not here.
RHOME='~'
STATE_DIR=$RHOME/lm_jax_run
# Where a gs://BUCKET workdir is mounted on the workers: $RHOME/gcs/BUCKET.
GCS_MOUNT_DIR=gcs
REMOTE_TARBALL=lm_jax-src.tar.gz

parse_args() {
  local opt val
  while (($#)); do
    opt=$1
    case $opt in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift; continue ;;
      --spot) SPOT=1; shift; continue ;;
      --preemptible) PREEMPTIBLE=1; shift; continue ;;
      --detach) DETACH=1; shift; continue ;;
      --yes | -y) YES=1; shift; continue ;;
      --) shift; PASSTHROUGH=("$@"); break ;;
      --*=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
      --*)
        (($# >= 2)) || die "option $opt needs a value"
        val=$2; shift 2 ;;
      -*) die "unknown option '$opt'" ;;
      *)
        [[ -z $COMMAND ]] || die "more than one command: '$COMMAND' and '$opt'"
        COMMAND=$opt; shift; continue ;;
    esac
    case $opt in
      --project) PROJECT=$val ;;
      --zone) ZONE=$val ;;
      --name | --tpu-name) TPU_NAME=$val ;;
      --accelerator | --accelerator-type) ACCELERATOR=$val ;;
      --version | --runtime-version) RUNTIME_VERSION=$val ;;
      --workdir) WORKDIR=$val ;;
      --config) CONFIG=$val ;;
      --mode) MODE=$val ;;
      --repo-source) REPO_SOURCE=$val ;;
      --repo-ref) REPO_REF=$val ;;
      --jax-spec) JAX_SPEC=$val ;;
      --python-version) PYTHON_VERSION=$val ;;
      --extra-args) EXTRA_ARGS=$val ;;
      --num-workers) NUM_WORKERS=$val ;;
      --follow-workers) FOLLOW_WORKERS=$val ;;
      --log-dir) LOG_DIR=$val ;;
      *) die "unknown option '$opt'" ;;
    esac
  done
}

# ----------------------------------------------------------------------------------- validation

# Number of TPU VM hosts of an accelerator type; empty when the type is not known here.
# v2/v3/v4/v5p: the suffix counts TensorCores, 2 per chip, 4 chips per host.
# v5litepod/v6e: the suffix counts chips; up to 8 chips on one host, 4 per host beyond.
workers_for_accelerator() {
  local type=${1%%-*} n=${1##*-}
  is_uint "$n" && ((10#$n > 0)) || return 0
  n=$((10#$n))
  case $type in
    v2 | v3 | v4 | v5p) printf '%s' $((n <= 8 ? 1 : n / 8)) ;;
    v5litepod | v6e) printf '%s' $((n <= 8 ? 1 : n / 4)) ;;
    *) ;;
  esac
}

default_runtime_version() {
  case ${1%%-*} in
    v2 | v3 | v4) printf 'tpu-ubuntu2204-base' ;;
    v5p) printf 'v2-alpha-tpuv5' ;;
    v5litepod) printf 'v2-alpha-tpuv5-lite' ;;
    v6e) printf 'v2-alpha-tpuv6e' ;;
    *) ;;
  esac
}

need_project_zone_name() {
  [[ -n $PROJECT ]] || die "missing project: pass --project or set PROJECT (e.g. PROJECT=\$(gcloud config get-value project))"
  [[ -n $ZONE ]] || die "missing zone: pass --zone or set ZONE (e.g. us-east5-a for v5p, us-central2-b for v4)"
  [[ $PROJECT =~ ^[a-z][-a-z0-9.:]*[a-z0-9]$ ]] || die "invalid project id '$PROJECT'"
  [[ $ZONE =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] || die "invalid zone '$ZONE' (expected e.g. us-east5-a)"
  [[ $TPU_NAME =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
    die "invalid TPU name '$TPU_NAME': lowercase letters, digits and '-', starting with a letter, at most 63 characters"
  validate_remote_path REMOTE_DIR "$REMOTE_DIR"
  validate_remote_path REMOTE_VENV "$REMOTE_VENV"
  [[ $REMOTE_DIR != /* && $REMOTE_DIR != "$RHOME/"* && $REMOTE_VENV != /* && $REMOTE_VENV != "$RHOME/"* ]] ||
    die "REMOTE_DIR and REMOTE_VENV are relative to the workers' home directory"
  if [[ -n $NUM_WORKERS ]]; then
    if ! is_uint "$NUM_WORKERS" || ((10#$NUM_WORKERS == 0)); then
      die "--num-workers must be a positive integer, not '$NUM_WORKERS'"
    fi
  fi
  local v
  for v in SPOT PREEMPTIBLE DRY_RUN; do
    [[ ${!v} == 0 || ${!v} == 1 ]] || die "$v must be 0 or 1, not '${!v}'"
  done
}

validate_create() {
  [[ $ACCELERATOR =~ ^[a-z0-9]+-[0-9]+$ ]] ||
    die "invalid accelerator type '$ACCELERATOR' (expected e.g. v5p-32, v4-64, v5litepod-16)"
  if [[ -z $RUNTIME_VERSION ]]; then
    RUNTIME_VERSION=$(default_runtime_version "$ACCELERATOR")
    [[ -n $RUNTIME_VERSION ]] ||
      die "no default runtime version for '$ACCELERATOR': pass --version (see: gcloud compute tpus tpu-vm versions list --zone=$ZONE)"
  fi
  [[ $SPOT == 1 && $PREEMPTIBLE == 1 ]] && die "--spot and --preemptible exclude each other"
  return 0
}

# Sets SOURCE_KIND (git|dir) and, for a directory, SOURCE_DIR (absolute).
SOURCE_KIND=""
SOURCE_DIR=""
validate_setup() {
  [[ -n $REPO_SOURCE ]] || REPO_SOURCE=$(cd "$SCRIPT_DIR/.." && pwd)
  if [[ $REPO_SOURCE =~ ^(https?|ssh|git|file):// || $REPO_SOURCE =~ ^[A-Za-z0-9._-]+@[^:/]+: ]]; then
    SOURCE_KIND=git
  elif [[ -d $REPO_SOURCE ]]; then
    SOURCE_KIND=dir
    SOURCE_DIR=$(cd "$REPO_SOURCE" && pwd)
    [[ -f $SOURCE_DIR/lm_jax/__init__.py && -f $SOURCE_DIR/setup.cfg ]] ||
      die "REPO_SOURCE '$REPO_SOURCE' is not an lm_jax checkout (no lm_jax/__init__.py and setup.cfg)"
  else
    die "REPO_SOURCE '$REPO_SOURCE' is neither a git URL (https://, ssh://, git@host:) nor an existing directory"
  fi
  [[ -z $REPO_REF || $SOURCE_KIND == git ]] || die "--repo-ref only applies to a git URL REPO_SOURCE"
  [[ -z $REPO_REF || $REPO_REF =~ ^[A-Za-z0-9_./-]+$ ]] || die "invalid --repo-ref '$REPO_REF'"
  [[ $PYTHON_VERSION =~ ^3\.[0-9]+$ ]] || die "invalid --python-version '$PYTHON_VERSION' (expected e.g. 3.11)"
  [[ -n $JAX_SPEC ]] || die "--jax-spec must not be empty"
}

validate_run() {  # before the worker count is known
  [[ -n $WORKDIR ]] || die "missing workdir: pass --workdir or set WORKDIR (e.g. gs://my-bucket/lm_jax/hotpotqa)"
  [[ ! $WORKDIR =~ [[:space:]] ]] || die "workdir '$WORKDIR' must not contain white space"
  if [[ $WORKDIR == gs://* ]]; then
    [[ $WORKDIR =~ ^gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9](/[A-Za-z0-9_@%+=:,./-]*)?$ &&
      ! $WORKDIR =~ /\.\.(/|$) ]] ||
      die "invalid Cloud Storage workdir '$WORKDIR' (expected gs://BUCKET/PATH, PATH in letters, digits and _ . / - @ % + = : , with no '..' component)"
  fi
  validate_config "$CONFIG"
  validate_mode "$MODE"
  [[ -n $LOG_DIR ]] || LOG_DIR=launch_logs/$TPU_NAME
  return 0
}

validate_workdir_for() {  # N_WORKERS TYPE
  if [[ $WORKDIR != gs://* ]]; then
    if (($1 > 1)); then
      die "WORKDIR must start with gs:// on a multi-host TPU ($2 has $1 workers, which all read and write it); got '$WORKDIR'"
    fi
    [[ -n ${WORKDIR_WARNED:-} ]] ||
      note "warning: WORKDIR '$WORKDIR' is on the TPU VM's own disk: it is lost when the TPU is deleted or preempted; prefer gs://"
    WORKDIR_WARNED=1
  fi
}

# ------------------------------------------------------------------------------------ gcloud

GCLOUD_TPU=(gcloud compute tpus tpu-vm)

# The TPU's location flags, in LOCATION.
location_flags() {
  LOCATION=("--zone=$ZONE" "--project=$PROJECT")
}

ssh_argv() {  # WORKER COMMAND -> SSH_ARGV; SSH_FLAGS is word-split on purpose: a list of flags
  local -a extra=()
  read -ra extra <<< "$SSH_FLAGS"
  location_flags
  SSH_ARGV=("${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" "--worker=$1" "${extra[@]}" "--command=$2")
}

# Number of workers, in N_WORKERS: --num-workers; else from the accelerator type, which
# `resolve_workers live` reads from the TPU with gcloud describe and `resolve_workers static`
# takes from --accelerator (for --dry-run, and for `all` before the TPU exists). Then checks
# WORKDIR and --follow-workers against it.
N_WORKERS=""
WORKERS_NOTE=""
resolve_workers() {
  local type=$ACCELERATOR
  if [[ -n $NUM_WORKERS ]]; then
    N_WORKERS=$((10#$NUM_WORKERS))
  else
    if [[ $1 == static ]]; then
      WORKERS_NOTE="workers: from --accelerator $ACCELERATOR"
      [[ $COMMAND == all ]] || WORKERS_NOTE+=" (a real run reads the type with: $(cmd_line "${GCLOUD_TPU[@]}" describe "$TPU_NAME" "--zone=$ZONE" "--project=$PROJECT" '--format=value(acceleratorType)'))"
    else
      location_flags
      type=$("${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${LOCATION[@]}" '--format=value(acceleratorType)') ||
        fail "cannot describe TPU '$TPU_NAME' in $ZONE (does it exist? create it with: $PROG create)"
      type=${type##*/}
      [[ $type == "$ACCELERATOR" ]] || note "TPU $TPU_NAME is a $type"
    fi
    N_WORKERS=$(workers_for_accelerator "$type")
    [[ -n $N_WORKERS ]] || die "cannot tell how many workers a '$type' TPU has: pass --num-workers"
  fi
  [[ $COMMAND == logs ]] || validate_workdir_for "$N_WORKERS" "$type"
  parse_index_list "$FOLLOW_WORKERS" "$N_WORKERS"
}

# ------------------------------------------------------------------------------------ commands

cmd_create() {
  local -a flags=() extra=()
  location_flags
  read -ra extra <<< "$CREATE_FLAGS"
  if [[ $DRY_RUN == 1 ]]; then
    dry_comment "create is skipped when $TPU_NAME already exists and is READY"
  else
    local state
    if state=$("${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${LOCATION[@]}" '--format=value(state)' 2>/dev/null); then
      if [[ $state == READY ]]; then
        note "TPU $TPU_NAME already exists and is READY: not creating it"
        return 0
      fi
      case $state in
        PREEMPTED | TERMINATED)
          fail "TPU $TPU_NAME exists in state $state and cannot be restarted: delete it first ($PROG --project $PROJECT --zone $ZONE --name $TPU_NAME delete), then re-run" ;;
        STOPPED)
          fail "TPU $TPU_NAME is STOPPED: start it ($(cmd_line "${GCLOUD_TPU[@]}" start "$TPU_NAME" "${LOCATION[@]}")) or delete it, then re-run" ;;
        *)
          fail "TPU $TPU_NAME exists in state ${state:-unknown}: wait until it is READY (see: $PROG status), or delete it" ;;
      esac
    fi
  fi
  flags=("--accelerator-type=$ACCELERATOR" "--version=$RUNTIME_VERSION")
  [[ $SPOT == 1 ]] && flags+=(--spot)
  [[ $PREEMPTIBLE == 1 ]] && flags+=(--preemptible)
  run_cmd "${GCLOUD_TPU[@]}" create "$TPU_NAME" "${LOCATION[@]}" "${flags[@]}" "${extra[@]}"
}

# Remote shell text that installs Cloud Storage FUSE unless it is there, as Google documents it for
# Ubuntu: the gcsfuse-<codename> apt repository, signed with the packages.cloud.google.com key.
# apt waits for the dpkg lock (a fresh VM may be running unattended-upgrades).
remote_gcsfuse_install_cmd() {
  local key=/usr/share/keyrings/cloud.google.asc apt="apt-get -o DPkg::Lock::Timeout=600"
  printf '%s' "if ! command -v gcsfuse >/dev/null; then " \
    "GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s); " \
    "echo \"deb [signed-by=$key] https://packages.cloud.google.com/apt \$GCSFUSE_REPO main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; " \
    "sudo curl -fsSL -o $key https://packages.cloud.google.com/apt/doc/apt-key.gpg; " \
    "sudo $apt update -qq; sudo DEBIAN_FRONTEND=noninteractive $apt install -y -qq gcsfuse; fi; " \
    "gcsfuse --version"
}

# Remote shell text that installs uv if needed, makes the venv and installs jax + lm_jax.
remote_install_cmd() {
  local venv="$RHOME/$REMOTE_VENV" dir="$RHOME/$REMOTE_DIR"
  printf '%s' "if ! command -v uv >/dev/null && [ ! -x ~/.local/bin/uv ]; then " \
    "python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv; fi; " \
    "export PATH=\"\$HOME/.local/bin:\$PATH\"; " \
    "uv venv --allow-existing --python $(shquote "$PYTHON_VERSION") $venv; " \
    "uv pip install --python $venv/bin/python $(shquote "$JAX_SPEC") -e $dir; " \
    "$venv/bin/python -c $(shquote 'import socket, jax, lm_jax; print(socket.gethostname(), "lm_jax", lm_jax.__version__, "jax", jax.__version__)')"
}

cmd_setup() {
  local dir="$RHOME/$REMOTE_DIR" fetch tmp="" tarball
  local -a extra=()
  read -ra extra <<< "$SSH_FLAGS"
  location_flags
  if [[ $SOURCE_KIND == dir ]]; then
    if [[ $DRY_RUN == 1 ]]; then
      tarball=${TMPDIR:-/tmp}/$REMOTE_TARBALL
    else
      tmp=$(mktemp -d)
      # shellcheck disable=SC2064  # expand now: tmp is local
      trap "rm -rf '$tmp'" EXIT
      tarball=$tmp/$REMOTE_TARBALL
    fi
    run_cmd tar -C "$SOURCE_DIR" -czf "$tarball" \
      --exclude=.git --exclude=.venv --exclude=venv --exclude=__pycache__ --exclude='*.pyc' \
      --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.ruff_cache --exclude='*.log' \
      --exclude='./workdir*' --exclude=./runs --exclude=./launch_logs .
    [[ $DRY_RUN == 1 ]] || note "source archive: $(du -h "$tarball" | cut -f1)"
    run_cmd "${GCLOUD_TPU[@]}" scp "$tarball" "$TPU_NAME:$REMOTE_TARBALL" "${LOCATION[@]}" --worker=all "${extra[@]}"
    fetch="rm -rf $dir; mkdir -p $dir; tar -xzf ~/$REMOTE_TARBALL -C $dir; rm -f ~/$REMOTE_TARBALL"
  else
    fetch="rm -rf $dir; git clone --quiet $(shquote "$REPO_SOURCE") $dir"
    [[ -n $REPO_REF ]] && fetch+="; git -C $dir checkout --quiet $(shquote "$REPO_REF")"
  fi
  ssh_argv all "set -e; $(remote_gcsfuse_install_cmd); $fetch; $(remote_install_cmd)"
  run_cmd "${SSH_ARGV[@]}"
}

follow_builder() {  # WORKER -> FOLLOW_ARGV
  ssh_argv "$1" "$(remote_follow_cmd "$STATE_DIR")"
  FOLLOW_ARGV=("${SSH_ARGV[@]}")
}

cmd_follow() {
  follow_all worker "$LOG_DIR" follow_builder "${INDICES[@]}"
}

# Remote shell text that mounts BUCKET at MOUNT_POINT (a remote path: `~` expands there) with
# gcsfuse unless it is mounted already; gcsfuse goes on in the background after this ssh session.
remote_mount_cmd() {  # BUCKET MOUNT_POINT
  local bucket=$1 mnt=$2 gcsfuse
  local -a flags=()
  read -ra flags <<< "$GCSFUSE_FLAGS"  # word-split on purpose: a list of flags
  gcsfuse="$(cmd_line gcsfuse "${flags[@]}" "$bucket") $mnt"
  printf '%s' "set -e; mkdir -p $mnt; if ! mountpoint -q $mnt; then " \
    "if ! command -v gcsfuse >/dev/null; then echo \"gcsfuse is not installed on \$(hostname): run $PROG setup first\" >&2; exit 5; fi; " \
    "$gcsfuse || { echo \"cannot mount gs://$bucket at $mnt on \$(hostname): does the bucket exist, and can the TPU VM service account read and write it?\" >&2; exit 5; }; fi"
}

cmd_run() {
  local command workdir=$WORKDIR mount=""
  local -a flags=()
  # Multi-host: let jax.distributed.initialize() find the other workers (recommended on TPU pods).
  ((N_WORKERS > 1)) && flags+=(--auto_distributed)
  if [[ $WORKDIR == gs://* ]]; then
    # lm_jax writes with POSIX file I/O: it gets the bucket's mount point, the same on every worker.
    local url=${WORKDIR#gs://} bucket
    bucket=${url%%/*}
    mount="$(remote_mount_cmd "$bucket" "$RHOME/$GCS_MOUNT_DIR/$bucket"); "
    workdir="\$HOME/$GCS_MOUNT_DIR/$bucket${url#"$bucket"}"
    dry_comment "mount gs://$bucket at $RHOME/$GCS_MOUNT_DIR/$bucket on every worker (Cloud Storage FUSE); WORKDIR $WORKDIR is $workdir there"
  fi
  command=$(lm_jax_cmd "$RHOME/$REMOTE_VENV/bin/python" "$CONFIG" "$workdir" "$MODE" "$EXTRA_ARGS" \
    "${flags[@]}" "${PASSTHROUGH[@]}")
  dry_comment "run on all $N_WORKERS workers: $command"
  ssh_argv all "$mount$(remote_start_cmd "$STATE_DIR" "$RHOME/$REMOTE_DIR" "$command")"
  run_cmd "${SSH_ARGV[@]}" ||
    fail "starting lm_jax failed on some worker (see above); those that started wait for the others at jax.distributed initialization: '$PROG stop' stops them"
  if [[ $DETACH == 1 ]]; then
    [[ $DRY_RUN == 1 ]] || note "started; follow with: $PROG logs (same options); stop with: $PROG stop"
    return 0
  fi
  cmd_follow
}

cmd_stop() {
  ssh_argv all "$(remote_stop_cmd "$STATE_DIR")"
  run_cmd "${SSH_ARGV[@]}"
}

cmd_status() {
  location_flags
  run_cmd "${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${LOCATION[@]}" '--format=yaml(name,acceleratorType,state,health,runtimeVersion,schedulingConfig)'
  ssh_argv all "$(remote_status_cmd "$STATE_DIR")"
  run_cmd "${SSH_ARGV[@]}"
}

cmd_delete() {
  location_flags
  if [[ $DRY_RUN != 1 && $YES != 1 ]]; then
    [[ -t 0 ]] || fail "refusing to delete TPU $TPU_NAME without confirmation: stdin is not a terminal; pass --yes"
    local answer
    read -r -p "Delete TPU VM $TPU_NAME in $ZONE (project $PROJECT)? Its disks go too; gs:// data stays. [y/N] " answer
    [[ $answer == y || $answer == Y || $answer == yes ]] || { note "not deleted"; return 1; }
  fi
  run_cmd "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${LOCATION[@]}" --quiet
}

main() {
  require_bash
  parse_args "$@"
  [[ -n $COMMAND ]] || die "missing command (create|setup|run|logs|stop|status|delete|all)"
  case $COMMAND in
    create | setup | run | logs | stop | status | delete | all) ;;
    *) die "unknown command '$COMMAND' (expected create|setup|run|logs|stop|status|delete|all)" ;;
  esac
  [[ ${#PASSTHROUGH[@]} == 0 || $COMMAND == run || $COMMAND == all ]] ||
    die "arguments after -- are for lm_jax.main and only apply to run and all"
  need_project_zone_name
  local live=live
  [[ $DRY_RUN == 0 ]] || live=static
  # Validate everything the command needs before doing anything.
  case $COMMAND in
    create) validate_create ;;
    setup) validate_setup ;;
    run)
      validate_run
      resolve_workers "$live"
      ;;
    logs)
      [[ -n $LOG_DIR ]] || LOG_DIR=launch_logs/$TPU_NAME
      resolve_workers "$live"
      ;;
    all)
      validate_create
      validate_setup
      validate_run
      resolve_workers static  # the TPU is made here, as --accelerator says
      ;;
    *) ;;
  esac
  dry_comment "$PROG $COMMAND: TPU $TPU_NAME ($ACCELERATOR) in $ZONE, project $PROJECT"
  [[ -z $WORKERS_NOTE ]] || dry_comment "$WORKERS_NOTE"
  case $COMMAND in
    create) cmd_create ;;
    setup) cmd_setup ;;
    run) cmd_run ;;
    logs) cmd_follow ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    delete) cmd_delete ;;
    all)
      cmd_create
      # An existing TPU that was not created here may differ from --accelerator.
      [[ $live == static ]] || resolve_workers live
      cmd_setup
      cmd_run
      ;;
  esac
}

main "$@"
