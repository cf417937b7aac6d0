#!/usr/bin/env bash
# Multi-host GPU launcher for lm_jax over plain ssh (no scheduler). Run with --help for the documentation.
set -euo pipefail

PROG=gpu_cluster.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_common.sh
. "$SCRIPT_DIR/_common.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu_cluster.sh --hosts FILE [OPTIONS] COMMAND [-- LM_JAX_ARGS...]

Runs one lm_jax process per host of a GPU cluster, over ssh, without a scheduler. Process i runs,
in REMOTE_DIR on host i of the hosts file:

  PYTHON -m lm_jax.main --config=CONFIG --workdir=WORKDIR --mode=MODE \
      --coordinator_address=HOST0:PORT --num_processes=N --process_id=i [LM_JAX_ARGS] [EXTRA_ARGS]

where HOST0 is the first host and N the number of hosts. Each process uses all the GPUs of its
host. lm_jax must already be installed on every host (same REMOTE_DIR checkout and PYTHON; a
shared file system makes that one install).

Commands:
  run      start the process on every host, detached (it survives this terminal), then follow the
           logs: host 0 is shown here and every host's log is written to LOG_DIR/host-<i>.log.
           Ctrl-C stops following, not the run. If a host fails to start, the processes already
           started are stopped.
  logs     follow the logs of the current or last run again
  stop     stop the run on every host (SIGTERM to its process group, SIGKILL after 30 s)
  status   show, per host, whether the run is going or how it ended

Options (each can also be set by the environment variable in brackets; flags win):
  --hosts FILE            one ssh destination per line ([user@]host); blank lines and # comments
                          are ignored. The first host is the coordinator.      [HOSTS_FILE]
  --workdir DIR           an absolute path on a file system all hosts share (NFS, or a bucket
                          mounted with gcsfuse at the same path on every host)   [WORKDIR]
  --config PATH[:ARG]     config, relative to REMOTE_DIR (default: configs/hotpotqa.py)  [CONFIG]
  --mode MODE             train|export|index|eval|all|ask (default: all)       [MODE]
  --port PORT             coordinator port on the first host (default: 12355) [COORDINATOR_PORT]
  --coordinator-address A  HOST:PORT that every host can reach (default: first host's name, without
                          user@, and --port); set it when the ssh name is an alias
                                                                               [COORDINATOR_ADDRESS]
  --remote-dir DIR        lm_jax checkout on the hosts: relative to the home, ~/..., or absolute
                          (default: lm_jax)                                    [REMOTE_DIR]
  --python CMD            Python with lm_jax installed on the hosts, inserted verbatim in the remote
                          command (default: python3; e.g. ~/lm_jax_venv/bin/python)  [REMOTE_PYTHON]
  --name NAME             job name: the run's log, pid and exit status are kept on host i in
                          ~/.lm_jax_run/NAME-p<i>/ (default: lm_jax)           [JOB_NAME]
  --extra-args STR        extra lm_jax.main arguments, inserted verbatim in the remote command.
                          Arguments after `--` are passed too, each quoted.    [EXTRA_ARGS]
  --follow-hosts LIST     hosts whose logs run/logs follow: all, or e.g. 0,3 (default: all)
                                                                               [FOLLOW_HOSTS]
  --log-dir DIR           local directory for the per-host logs (default: launch_logs/NAME)  [LOG_DIR]
  --detach                run: start and return without following the logs
  --dry-run               print every command that would run (one per line, quoted: the output is
                          a shell script), run nothing, exit 0                [DRY_RUN=1]
  -h, --help              show this help

Environment only:
  SSH        the ssh program (default: ssh)
  SSH_OPTS   options for every ssh call (default: '-o BatchMode=yes')
  REMOTE_ENV shell assignments put before the command on every host, verbatim,
             e.g. 'XLA_PYTHON_CLIENT_MEM_FRACTION=.9 NCCL_DEBUG=WARN'

Examples:
  printf '%s\n' gpu-node-0 gpu-node-1 > hosts.txt
  launch/gpu_cluster.sh --hosts hosts.txt --workdir /mnt/shared/lm_jax/hotpotqa \
      --python '~/lm_jax_venv/bin/python' --dry-run run
  launch/gpu_cluster.sh --hosts hosts.txt --workdir /shared/runs/hotpotqa run
  launch/gpu_cluster.sh --hosts hosts.txt stop
EOF
}

HOSTS_FILE=${HOSTS_FILE:-}
WORKDIR=${WORKDIR:-}
CONFIG=${CONFIG:-configs/hotpotqa.py}
MODE=${MODE:-all}
COORDINATOR_PORT=${COORDINATOR_PORT:-12355}
COORDINATOR_ADDRESS=${COORDINATOR_ADDRESS:-}
REMOTE_DIR=${REMOTE_DIR:-lm_jax}
REMOTE_PYTHON=${REMOTE_PYTHON:-python3}
JOB_NAME=${JOB_NAME:-lm_jax}
EXTRA_ARGS=${EXTRA_ARGS:-}
FOLLOW_HOSTS=${FOLLOW_HOSTS:-all}
LOG_DIR=${LOG_DIR:-}
SSH=${SSH:-ssh}
SSH_OPTS=${SSH_OPTS:--o BatchMode=yes}
REMOTE_ENV=${REMOTE_ENV:-}
DETACH=0
COMMAND=""
PASSTHROUGH=()
HOSTS=()

parse_args() {
  local opt val
  while (($#)); do
    opt=$1
    case $opt in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift; continue ;;
      --detach) DETACH=1; shift; continue ;;
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
      --hosts | --hosts-file) HOSTS_FILE=$val ;;
      --workdir) WORKDIR=$val ;;
      --config) CONFIG=$val ;;
      --mode) MODE=$val ;;
      --port) COORDINATOR_PORT=$val ;;
      --coordinator-address) COORDINATOR_ADDRESS=$val ;;
      --remote-dir) REMOTE_DIR=$val ;;
      --python) REMOTE_PYTHON=$val ;;
      --name) JOB_NAME=$val ;;
      --extra-args) EXTRA_ARGS=$val ;;
      --follow-hosts) FOLLOW_HOSTS=$val ;;
      --log-dir) LOG_DIR=$val ;;
      *) die "unknown option '$opt'" ;;
    esac
  done
}

read_hosts() {
  [[ -n $HOSTS_FILE ]] || die "missing hosts file: pass --hosts FILE or set HOSTS_FILE (one [user@]host per line)"
  [[ -f $HOSTS_FILE && -r $HOSTS_FILE ]] || die "hosts file '$HOSTS_FILE' does not exist or is not readable"
  local line n=0
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ -n $line ]] || continue
    [[ $line =~ ^([A-Za-z0-9._-]+@)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])$ ]] ||
      die "$HOSTS_FILE:$n: '$line' is not a host ([user@]name, [user@]IPv4 or [user@][IPv6])"
    HOSTS+=("$line")
  done < "$HOSTS_FILE"
  ((${#HOSTS[@]} > 0)) || die "hosts file '$HOSTS_FILE' lists no host"
}

validate() {
  [[ $JOB_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "invalid --name '$JOB_NAME' (letters, digits, _ . -)"
  [[ -n $LOG_DIR ]] || LOG_DIR=launch_logs/$JOB_NAME
  read_hosts
  parse_index_list "$FOLLOW_HOSTS" "${#HOSTS[@]}"
  [[ $COMMAND == run ]] || return 0
  [[ -n $WORKDIR ]] || die "missing workdir: pass --workdir or set WORKDIR (an absolute path on a shared file system)"
  [[ ! $WORKDIR =~ [[:space:]] ]] || die "workdir '$WORKDIR' must not contain white space"
  # lm_jax writes only its checkpoints through gs:// itself; everything else needs a file system.
  [[ $WORKDIR != *://* ]] ||
    die "WORKDIR '$WORKDIR': mount the bucket on every host (e.g. gcsfuse BUCKET /mnt/BUCKET) and pass the mounted path"
  [[ $WORKDIR == /* ]] ||
    die "WORKDIR must be an absolute path on a file system that all hosts share; got '$WORKDIR'"
  if ((${#HOSTS[@]} > 1)); then
    note "WORKDIR $WORKDIR must be on a file system shared by all ${#HOSTS[@]} hosts"
  fi
  validate_config "$CONFIG"
  validate_mode "$MODE"
  validate_remote_path REMOTE_DIR "$REMOTE_DIR"
  [[ -n $REMOTE_PYTHON ]] || die "--python must not be empty"
  if ! is_uint "$COORDINATOR_PORT" || ((10#$COORDINATOR_PORT < 1 || 10#$COORDINATOR_PORT > 65535)); then
    die "invalid --port '$COORDINATOR_PORT' (1..65535)"
  fi
  if [[ -z $COORDINATOR_ADDRESS ]]; then
    COORDINATOR_ADDRESS="${HOSTS[0]#*@}:$((10#$COORDINATOR_PORT))"
  fi
  [[ $COORDINATOR_ADDRESS =~ ^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):[0-9]+$ ]] ||
    die "invalid --coordinator-address '$COORDINATOR_ADDRESS' (expected HOST:PORT)"
}

state_dir() {  # INDEX: on the host; '~' expands there
  local rhome='~'
  printf '%s' "$rhome/.lm_jax_run/$JOB_NAME-p$1"
}

ssh_argv() {  # INDEX COMMAND -> SSH_ARGV
  local -a opts=()
  read -ra opts <<< "$SSH_OPTS"
  local host=${HOSTS[$1]}
  host=${host//[][]/}  # ssh wants user@::1, not user@[::1]
  SSH_ARGV=("$SSH" "${opts[@]}" "$host" "$2")
}

follow_builder() {
  ssh_argv "$1" "$(remote_follow_cmd "$(state_dir "$1")")"
  FOLLOW_ARGV=("${SSH_ARGV[@]}")
}

cmd_follow() {
  follow_all host "$LOG_DIR" follow_builder "${INDICES[@]}"
}

cmd_run() {
  local n=${#HOSTS[@]} i command
  dry_comment "$n processes, coordinator $COORDINATOR_ADDRESS"
  for ((i = 0; i < n; i++)); do
    command=$(lm_jax_cmd "$REMOTE_PYTHON" "$CONFIG" "$WORKDIR" "$MODE" "$EXTRA_ARGS" \
      "--coordinator_address=$COORDINATOR_ADDRESS" "--num_processes=$n" "--process_id=$i" "${PASSTHROUGH[@]}")
    dry_comment "host $i (${HOSTS[$i]}): $command"
    ssh_argv "$i" "$(remote_start_cmd "$(state_dir "$i")" "$REMOTE_DIR" "$command")"
    if ! run_cmd "${SSH_ARGV[@]}"; then
      note "starting process $i on ${HOSTS[$i]} failed; stopping the ${i} started before it"
      local j
      for ((j = 0; j < i; j++)); do
        ssh_argv "$j" "$(remote_stop_cmd "$(state_dir "$j")")"
        run_cmd "${SSH_ARGV[@]}" || note "could not stop process $j on ${HOSTS[$j]}"
      done
      fail "lm_jax did not start on ${HOSTS[$i]}"
    fi
  done
  if [[ $DETACH == 1 ]]; then
    [[ $DRY_RUN == 1 ]] || note "started; follow with: $PROG --hosts $HOSTS_FILE logs; stop with: $PROG --hosts $HOSTS_FILE stop"
    return 0
  fi
  cmd_follow
}

cmd_each() {  # REMOTE_CMD_BUILDER: run it on every host, in turn; fails if any host failed
  local i rc=0
  for i in "${!HOSTS[@]}"; do
    ssh_argv "$i" "$("$1" "$(state_dir "$i")")"
    run_cmd "${SSH_ARGV[@]}" || { note "host $i (${HOSTS[$i]}) failed"; rc=1; }
  done
  return "$rc"
}

main() {
  require_bash
  parse_args "$@"
  [[ -n $COMMAND ]] || die "missing command (run|logs|stop|status)"
  case $COMMAND in
    run | logs | stop | status) ;;
    *) die "unknown command '$COMMAND' (expected run|logs|stop|status)" ;;
  esac
  [[ ${#PASSTHROUGH[@]} == 0 || $COMMAND == run ]] || die "arguments after -- are for lm_jax.main and only apply to run"
  validate
  case $COMMAND in
    run) cmd_run ;;
    logs) cmd_follow ;;
    stop) cmd_each remote_stop_cmd ;;
    status) cmd_each remote_status_cmd ;;
  esac
}

main "$@"
