# shellcheck shell=bash
# Helpers shared by launch/tpu_pod.sh and launch/gpu_cluster.sh. Sourced, never run directly.
#
# Conventions:
#   * DRY_RUN=1: every command that would run is printed to stdout instead, one per line, quoted so
#     that the output is itself a valid shell script; messages go to stderr.
#   * A training run is started detached on every host (setsid + nohup), with its log, pid and exit
#     status in a per-host state directory, so it survives the launching terminal; `follow_all`
#     then streams the logs back, one local file per host.

PROG=${PROG:-$(basename "$0")}
DRY_RUN=${DRY_RUN:-0}
# Current line of the program's modes: train|export|index|eval|all|ask.
LM_JAX_MODES="train export index eval all ask"

die() {  # usage error: exit 2 with a pointer to --help
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  printf "Run '%s --help' for usage.\n" "$PROG" >&2
  exit 2
}

fail() {  # runtime failure: exit 1
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

note() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

require_bash() {
  if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
    printf '%s: error: needs bash >= 4.4 (this is %s); on macOS: brew install bash\n' \
      "$PROG" "$BASH_VERSION" >&2
    exit 2
  fi
}

# _quote WORD: sets Q (declared local by the caller) to WORD quoted for a POSIX shell. Plain words
# stay bare for readability, and --flag=VALUE is written --flag='VALUE'. No subshell: it is called
# once per argument.
_quote() {
  local s=$1 q="'" prefix=""
  if [[ $s =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    prefix=${BASH_REMATCH[1]}
    s=${BASH_REMATCH[2]}
  fi
  if [[ -n $s && $s =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    Q=$prefix$s
  else
    Q="$prefix'${s//$q/$q\\$q$q}'"
  fi
}

# shquote WORD: prints WORD quoted.
shquote() {
  local Q
  _quote "$1"
  printf '%s' "$Q"
}

# cmd_line ARG...: prints the arguments as one quoted command line.
cmd_line() {
  local out="" a Q
  for a in "$@"; do
    _quote "$a"
    out+="${out:+ }$Q"
  done
  printf '%s' "$out"
}

# run_cmd ARG...: run a command, or print it under DRY_RUN=1. Echoes it to stderr when it runs.
run_cmd() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '%s\n' "$(cmd_line "$@")"
    return 0
  fi
  printf '+ %s\n' "$(cmd_line "$@")" >&2
  "$@"
}

# dry_comment TEXT: a comment line in the dry-run script (nothing otherwise).
dry_comment() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '# %s\n' "$*"
  fi
}

is_uint() {
  [[ $1 =~ ^[0-9]+$ ]]
}

validate_mode() {
  local m
  for m in $LM_JAX_MODES; do
    [[ $1 == "$m" ]] && return 0
  done
  die "unknown --mode '$1' (expected one of: ${LM_JAX_MODES// /, })"
}

# A remote path: ~/..., /... or relative to the remote home, in characters that need no quoting.
validate_remote_path() {  # NAME VALUE
  [[ $2 =~ ^(~/)?[A-Za-z0-9_./-]+$ && ! $2 =~ (^|/)\.\.(/|$) ]] ||
    die "$1 '$2' must be a plain path (letters, digits, _ . / -, optionally starting with ~/; no '..')"
}

validate_config() {
  [[ -n $1 ]] || die "missing config: pass --config or set CONFIG (e.g. configs/hotpotqa.py)"
  [[ $1 =~ ^[A-Za-z0-9_./:=,-]+$ ]] ||
    die "config '$1' must be a path relative to the repository, optionally with ':override' (e.g. configs/hotpotqa.py:demo)"
}

# The command that lm_jax runs on every host:
#   [REMOTE_ENV] PYTHON -m lm_jax.main --config --workdir --mode [ARG...] [EXTRA_ARGS]
# ARGs (per-host flags, then the pass-through arguments) are quoted; REMOTE_ENV, PYTHON and
# EXTRA_ARGS are inserted verbatim: they are shell text for the remote shell. WORKDIR is quoted
# too, except for a leading literal `$HOME/`: that one is written --workdir="$HOME/..." so that
# the remote shell expands it (a `~` would stay literal after `--workdir=`).
#   lm_jax_cmd PYTHON CONFIG WORKDIR MODE EXTRA_ARGS [ARG...]
lm_jax_cmd() {
  local python=$1 config=$2 workdir=$3 mode=$4 extra=$5
  shift 5
  local cmd wd
  if [[ $workdir == "\$HOME/"* ]]; then
    [[ ${workdir#"\$HOME/"} =~ ^[A-Za-z0-9_@%+=:,./-]*$ ]] ||
      fail "workdir '$workdir': only plain characters may follow \$HOME/"
    wd="--workdir=\"$workdir\""
  else
    wd=$(cmd_line "--workdir=$workdir")
  fi
  cmd="$python -m lm_jax.main $(cmd_line "--config=$config") $wd $(cmd_line "--mode=$mode" "$@")"
  if [[ -n ${REMOTE_ENV:-} ]]; then cmd="$REMOTE_ENV $cmd"; fi
  if [[ -n $extra ]]; then cmd+=" $extra"; fi
  printf '%s' "$cmd"
}

# Remote shell text defining `alive`: true while the run in STATE is going. A process that has
# exited but is not reaped yet (a zombie: kill -0 still succeeds) counts as gone; hosts whose init
# is slow to reap, or never does (some containers), would otherwise look busy.
_remote_alive_fn() {
  local state=$1
  printf '%s' "alive() { p=\$(cat $state/pid 2>/dev/null) && [ -n \"\$p\" ] && kill -0 \"\$p\" 2>/dev/null " \
    "&& ! grep -qs '^State:[[:space:]]*Z' \"/proc/\$p/status\"; }; "
}

# Remote shell text that starts COMMAND detached in DIR, with its log in STATE/log, its pid in
# STATE/pid and its exit status in STATE/rc; it refuses to start while a previous run is alive.
#   remote_start_cmd STATE DIR COMMAND
remote_start_cmd() {
  local state=$1 dir=$2 command=$3 inner
  inner="export PYTHONUNBUFFERED=1; $command; echo \$? > $state/rc"
  printf '%s' "set -e; mkdir -p $state; $(_remote_alive_fn "$state")" \
    "if alive; then echo \"lm_jax is already running on \$(hostname) (pid \$p): use logs, or stop it first\" >&2; exit 3; fi; " \
    "rm -f $state/rc; if [ -f $state/log ]; then mv -f $state/log $state/log.prev; fi; " \
    "cd $dir; setsid nohup bash -c $(shquote "$inner") > $state/log 2>&1 < /dev/null & " \
    "echo \$! > $state/pid; echo \"started lm_jax on \$(hostname): pid \$!, log $state/log\""
}

# Remote shell text that prints STATE/log from the start and follows it until the run ends (or this
# connection drops), then exits with the run's exit status (1 when it was killed or stopped).
remote_follow_cmd() {
  local state=$1
  printf '%s' "if [ ! -f $state/pid ]; then echo \"no lm_jax run was started on \$(hostname) ($state/pid is missing)\" >&2; exit 4; fi; " \
    "$(_remote_alive_fn "$state")" \
    "tail -n +1 -s 0.2 -f $state/log & t=\$!; " \
    "while [ ! -f $state/rc ] && alive && kill -0 \"\$t\" 2>/dev/null; do sleep 0.2; done; " \
    "sleep 0.3; kill \"\$t\" 2>/dev/null; wait \"\$t\" 2>/dev/null; " \
    "if [ -f $state/rc ]; then echo \"[lm_jax on \$(hostname) exited with status \$(cat $state/rc)]\"; exit \"\$(cat $state/rc)\"; fi; " \
    "echo \"[lm_jax on \$(hostname) ended without an exit status: killed or stopped]\" >&2; exit 1"
}

# Remote shell text that stops the run (SIGTERM to its process group, SIGKILL after 30 s).
remote_stop_cmd() {
  local state=$1
  printf '%s' "$(_remote_alive_fn "$state")" \
    "if alive; then kill -TERM -- \"-\$p\" 2>/dev/null || kill -TERM \"\$p\"; " \
    "for _ in \$(seq 150); do alive || break; sleep 0.2; done; " \
    "if alive; then kill -KILL -- \"-\$p\" 2>/dev/null || kill -KILL \"\$p\"; fi; " \
    "echo \"stopped lm_jax on \$(hostname) (pid \$p)\"; " \
    "else echo \"no running lm_jax on \$(hostname)\"; fi"
}

# Remote shell text that reports whether a run is going, finished (with its status) or absent.
remote_status_cmd() {
  local state=$1
  printf '%s' "$(_remote_alive_fn "$state")" \
    "if [ ! -f $state/pid ]; then echo \"\$(hostname): no lm_jax run started\"; " \
    "elif alive; then echo \"\$(hostname): running (pid \$p)\"; " \
    "elif [ -f $state/rc ]; then echo \"\$(hostname): finished with status \$(cat $state/rc)\"; " \
    "else echo \"\$(hostname): ended without an exit status (killed or stopped)\"; fi; " \
    "if [ -f $state/log ]; then tail -n 3 $state/log; fi"
}

# follow_all LABEL LOG_DIR BUILDER INDEX...
# Follows the run on each INDEX at once: BUILDER INDEX must set the array FOLLOW_ARGV to the local
# command that prints that host's log. Each host's output goes to LOG_DIR/LABEL-INDEX.log; the first
# INDEX is also streamed to the terminal. Returns the first non-zero status, 0 when all succeeded.
FOLLOW_ARGV=()
FOLLOW_PIDS=()

# kill_tree PID: SIGTERM to PID and its descendants, children first (so that none is re-parented
# away before it is found).
kill_tree() {
  local child
  if command -v pgrep >/dev/null; then
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  fi
  kill -TERM "$1" 2>/dev/null || true
}

# On Ctrl-C: the followers run in the background, where they ignore SIGINT (as every `&` command
# of a script does), so stop them here; the run itself is detached and goes on.
_stop_following() {
  local pid
  for pid in "${FOLLOW_PIDS[@]}"; do kill_tree "$pid"; done
  printf '\n%s: stopped following; the run goes on. Reattach: %s logs; stop it: %s stop\n' \
    "$PROG" "$PROG" "$PROG" >&2
  exit 130
}

follow_all() {
  local label=$1 log_dir=$2 builder=$3
  shift 3
  local first=$1 i log rc=0 st
  local -a rest=("${@:2}")

  run_cmd mkdir -p "$log_dir"
  if [[ $DRY_RUN == 1 ]]; then
    for i in "${rest[@]}"; do
      "$builder" "$i"
      printf '%s > %s 2>&1 &\n' "$(cmd_line "${FOLLOW_ARGV[@]}")" "$(shquote "$log_dir/$label-$i.log")"
    done
    "$builder" "$first"
    printf '%s 2>&1 | tee %s\n' "$(cmd_line "${FOLLOW_ARGV[@]}")" "$(shquote "$log_dir/$label-$first.log")"
    printf 'wait\n'
    return 0
  fi

  FOLLOW_PIDS=()
  trap _stop_following INT TERM
  for i in "${rest[@]}"; do
    "$builder" "$i"
    "${FOLLOW_ARGV[@]}" > "$log_dir/$label-$i.log" 2>&1 &
    FOLLOW_PIDS+=("$!")
  done
  note "following $label $first here; all logs go to $log_dir/$label-<i>.log (Ctrl-C stops following, not the run)"
  "$builder" "$first"
  # In the background as well, and waited for: bash runs a trap only once the foreground command
  # ends, so a Ctrl-C that came just before a foreground follower started would wait for the
  # whole run; `wait` returns to the trap at once.
  ( set -o pipefail; "${FOLLOW_ARGV[@]}" 2>&1 | tee "$log_dir/$label-$first.log" ) &
  FOLLOW_PIDS=("$!" "${FOLLOW_PIDS[@]}")
  set +e
  wait "${FOLLOW_PIDS[0]}"
  st=$?
  set -e

  local -a statuses=("$st")
  for i in "${FOLLOW_PIDS[@]:1}"; do
    if wait "$i"; then statuses+=(0); else statuses+=("$?"); fi
  done
  trap - INT TERM
  local -a all=("$first" "${rest[@]}")
  for i in "${!all[@]}"; do
    log="$log_dir/$label-${all[$i]}.log"
    st=${statuses[$i]}
    if [[ $st == 0 ]]; then
      note "$label ${all[$i]}: ok (log: $log)"
    else
      note "$label ${all[$i]}: exit status $st (log: $log)"
      if ((i > 0)); then
        tail -n 15 "$log" | sed "s/^/  [$label ${all[$i]}] /" >&2 || true
      fi
      ((rc == 0)) && rc=$st
    fi
  done
  return "$rc"
}

# parse_index_list LIST COUNT: "all" or a comma-separated list of 0-based indices below COUNT,
# into the array INDICES (no subshell, so that a bad list stops the script).
INDICES=()
parse_index_list() {
  local list=$1 count=$2 i
  INDICES=()
  if [[ $list == all ]]; then
    for ((i = 0; i < count; i++)); do INDICES+=("$i"); done
    return 0
  fi
  local -a parts
  IFS=, read -ra parts <<< "$list"
  ((${#parts[@]} > 0)) || die "empty index list '$list'"
  for i in "${parts[@]}"; do
    if ! is_uint "$i" || ((10#$i >= count)); then
      die "index '$i' in '$list' is not in 0..$((count - 1))"
    fi
    INDICES+=("$((10#$i))")
  done
}
