"""The trusted side of the sandbox: launch ``child.py`` for one job, enforce limits, collect records.

Generated code never runs in the harness process. Each job gets a fresh
interpreter, a fresh working directory, a scrubbed environment, resource limits
(address space, processes, file size, CPU) and a wall-clock deadline after which
everything the program started is killed with SIGKILL. Containment, by who runs the harness:

- ``root``: private network and mount namespaces and a dedicated uid per run (``kill(-1)`` as that
  uid ends everything the run left behind; the uid cannot write the user's files).
- ``user-namespace`` (an ordinary user, as under SLURM and Apptainer): a new user namespace with new
  PID, network, IPC and mount namespaces per run; every mount read-only, the user's home hidden,
  private tmpfs for the working directory, /tmp, /var/tmp and /dev/shm, no capabilities left; the
  run's processes die with its PID namespace, and ``kill(-1)`` inside reaches nothing outside.
- ``weak``: neither (a kernel that refuses user namespaces): refused unless the user allows it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import logging
import os
import pickle
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promis_repro.sandbox.child import GOODBYE, kill_uid

log = logging.getLogger(__name__)

CHILD_SCRIPT = Path(__file__).with_name("child.py")
GiB = 1 << 30
MiB = 1 << 20

#: uids handed out to sandboxed runs when the harness runs as root; one uid per
#: concurrent run, so that a cleanup ``kill(-1)`` as that uid reaches exactly
#: the processes that run left behind.
SANDBOX_UID_RANGE = range(61000, 62000)
# where the uids' locks may live, in order: one directory for the whole host, never under $TMPDIR (each job
# may set its own), so that every root harness sees every lease; /tmp where /run is read-only (a container
# run from a read-only image, as Apptainer runs a SIF)
UID_LOCK_DIRS = (Path("/run/promis-repro-sandbox-uids"), Path("/tmp/promis-repro-sandbox-uids"))


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 4 * GiB
    max_processes: int = 32
    file_bytes: int = 256 * MiB
    tmpfs_bytes: int = 256 * MiB
    stderr_bytes: int = 64 * 1024
    result_bytes: int = 1 * GiB
    stdout_chars: int = 1 * MiB
    isolate_network: bool = True


@dataclass(frozen=True)
class Isolation:
    """What the kernel lets us do here; detected once per process and logged."""

    privileged: bool
    network_namespace: bool
    mount_namespace: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    mode: str = "weak"  # root | user-namespace | weak
    pid_namespace: bool = False

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def contained(self) -> bool:
        return self.mode != "weak"


def _probe(mode: str) -> tuple[bool, str, list[str]]:
    """Whether this process can contain a run in ``mode`` (``child.py probe MODE``), why not, and its notes."""
    try:
        result = subprocess.run(
            [sys.executable, "-I", str(CHILD_SCRIPT), "probe", mode], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc), []
    notes = [line.removeprefix("note: ") for line in result.stdout.splitlines() if line.startswith("note: ")]
    why = (result.stderr.strip().splitlines() or ["refused by the kernel"])[-1]
    return result.returncode == 0, why, notes


@functools.cache
def detect_isolation() -> Isolation:
    privileged = os.geteuid() == 0
    notes = []
    mode = "weak"
    if privileged:
        usable, why, found = _probe("root")
        if usable:
            mode = "root"
            notes += found
        else:  # root without the capabilities (a container, say): user namespaces may still do
            notes.append(f"root, but no namespaces of its own ({why})")
    if mode == "weak":
        usable, why, found = _probe("user-namespace")
        if usable:
            mode = "user-namespace"
            notes += found
        else:
            notes.append(f"no user namespaces ({why})")
    netns = mountns = mode != "weak"
    pidns = mode == "user-namespace"
    if not netns:
        notes.append("no network namespace: generated code can reach the network")
    if not mountns:
        notes.append("no mount namespace: /tmp is shared and the user's files are writable")
    isolation = Isolation(privileged, netns, mountns, tuple(notes), mode, pidns)
    if isolation.contained:
        log.info("sandbox isolation: %s", isolation.describe())
    else:
        log.warning("sandbox: weak containment here: %s", "; ".join(notes))
    return isolation


#: set by ``promis-repro --allow-weak-sandbox``: run generated code even without containment
ALLOW_WEAK = "PROMIS_REPRO_ALLOW_WEAK_SANDBOX"


def require_containment() -> Isolation:
    """The isolation in force; a one-line refusal when generated code could not be contained here."""
    isolation = detect_isolation()
    if not isolation.contained and os.environ.get(ALLOW_WEAK) != "1":
        from promis_repro.errors import UserError

        raise UserError(
            f"the sandbox cannot contain generated code here ({'; '.join(isolation.notes)}); "
            "refusing to run it: pass --allow-weak-sandbox to run it anyway, and the results record it"
        )
    return isolation


def uid_lock_dir() -> Path:
    """The first of ``UID_LOCK_DIRS`` that exists or can be made; it must be root's own and writable by no one
    else, so that no other user's files decide a lease."""
    from promis_repro.errors import UserError

    for candidate in UID_LOCK_DIRS:
        try:
            candidate.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            continue
        found = os.lstat(candidate)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o022:
            raise UserError(f"{candidate}: the sandbox's uid leases need a directory of root's no one else writes to")
        return candidate
    raise UserError(f"no place for the sandbox's uid leases: none of {', '.join(map(str, UID_LOCK_DIRS))} can be made")


def _run_lock(locks: Path, uid: int) -> Path:
    """The lock a run's supervisor holds on its uid (``child.supervise``), from before the program starts
    until every process of the uid is dead: a run outlives a harness killed during it."""
    return locks / f"{uid}.run"


def _still_running(run_lock: Path) -> bool:
    """Whether a run of the uid whose harness died (releasing its lease) is still going."""
    fd = os.open(run_lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock, if taken
    return False


@contextlib.contextmanager
def _lease_uid() -> Iterator[tuple[int, Path]]:
    """Hold an exclusive lock on one uid of SANDBOX_UID_RANGE (works across processes on a host) that no run
    is using: the harness's lease ends with the harness, a run's own lock (``_run_lock``) with its processes.
    Yields the uid and its run lock."""
    locks = uid_lock_dir()
    for uid in SANDBOX_UID_RANGE:
        handle = open(locks / f"{uid}.lock", "a")  # noqa: SIM115 - kept open while leased
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        run_lock = _run_lock(locks, uid)
        if _still_running(run_lock):
            handle.close()
            continue
        try:
            yield uid, run_lock
        finally:
            handle.close()
        return
    raise RuntimeError(f"all sandbox uids {SANDBOX_UID_RANGE.start}-{SANDBOX_UID_RANGE.stop - 1} are in use")


def _processes_of_current_user() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count


@dataclass
class RunOutput:
    records: list[dict[str, Any]]
    timed_out: bool
    returncode: int | None
    stderr_tail: str
    seconds: float
    # the kernel's accounting of the run's processes (CPU user+system seconds, peak resident set);
    # None when the supervisor could not report it
    cpu_seconds: float | None = None
    max_rss_bytes: int | None = None

    def problem(self) -> str | None:
        """A one-line reason when the child died without finishing its job."""
        if any("exit" in r for r in self.records):
            return None
        if self.timed_out:
            return "timeout: wall-clock limit reached"
        code = self.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = {"SIGXFSZ": "file size limit exceeded", "SIGKILL": "killed (memory or process limit)"}
            return f"crashed: {name}" + (f" ({hint[name]})" if name in hint else "")
        tail = self.stderr_tail.strip().splitlines()
        return f"exited early (code {code})" + (f": {tail[-1][:200]}" if tail else "")


def _child_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _read_records(fd: int, cap: int) -> list[dict[str, Any]]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, size = [], 0
    while size < cap:
        chunk = os.read(fd, min(1 << 20, cap - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    records = []
    for line in b"".join(chunks).split(b"\n"):
        if not line:
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            break  # a line cut short by a kill (or nonsense): everything after it is unknown
        if isinstance(record, dict):
            records.append(record)
    return records


class _Zygote:
    """One warm ``child.py`` process serving runs for one worker thread."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", str(CHILD_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_env("/"),
            cwd="/",
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        self.busy = False  # a thread is in ``run``

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, run_dir: Path, deadline: float) -> bool:
        """Serve one run; False when the zygote died or stopped answering (it is then killed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.busy = True
        try:
            try:
                self.proc.stdin.write(f"{run_dir}\t{deadline}\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return False
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline + 30)
            line = self.proc.stdout.readline() if ready else ""
            if not line.startswith("done"):
                self.close()
                return False
            return True
        finally:
            self.busy = False

    def stop(self) -> None:
        """End it gently (it exits at end of input), killed after 5 s. The goodbye tells it that this process
        is alive and has removed the run directories: input ending without one means this process died.

        A run still going (a thread waiting on it while this process exits: an interrupted harness) is left to
        end by its own deadline, neither said goodbye to nor killed: killing the zygote would kill the run's
        supervisor, which holds the run's uid, and not the program, which leads its own session. Without the
        goodbye, the zygote removes the run's directory once nobody reads its answer."""
        if self.busy:
            with contextlib.suppress(OSError):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            return
        if self.alive() and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(GOODBYE)
                self.proc.stdin.flush()
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.alive():
            self.close()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


_local = threading.local()
_zygotes: list[_Zygote] = []
_zygotes_lock = threading.Lock()


def _zygote() -> _Zygote:
    zygote = getattr(_local, "zygote", None)
    if zygote is None or not zygote.alive():
        if zygote is not None:
            _forget(zygote)
        zygote = _Zygote()
        _local.zygote = zygote
        with _zygotes_lock:
            _zygotes.append(zygote)
    return zygote


def _forget(zygote: _Zygote) -> None:
    with _zygotes_lock:
        if zygote in _zygotes:
            _zygotes.remove(zygote)
    for pipe in (zygote.proc.stdin, zygote.proc.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()


def close_thread_zygote() -> None:
    """Stop this thread's zygote (worker threads call this when they end, so none is left idle)."""
    zygote = getattr(_local, "zygote", None)
    if zygote is None:
        return
    _local.zygote = None
    zygote.stop()
    _forget(zygote)


@atexit.register
def _close_zygotes() -> None:
    for zygote in _zygotes:
        zygote.stop()


def run_job(job: dict[str, Any], deadline: float, limits: SandboxLimits | None = None) -> RunOutput:
    """Run one job (see ``child.py`` for the modes) under the sandbox; never raises for the program's faults."""
    limits = limits or SandboxLimits()
    isolation = require_containment()
    userns = isolation.mode == "user-namespace"
    with contextlib.ExitStack() as stack:
        uid, run_lock = stack.enter_context(_lease_uid()) if isolation.mode == "root" else (None, None)
        run_dir = Path(tempfile.mkdtemp(prefix="promis-sbx-"))
        stack.callback(shutil.rmtree, run_dir, True)
        os.chmod(run_dir, 0o711)
        workdir = run_dir / "work"
        workdir.mkdir(mode=0o777)
        env = _child_env(str(workdir))
        # a dedicated uid gets the cap as it is; a fresh user namespace counts its supervisor and init too
        if uid is not None or userns:
            nproc = limits.max_processes + (2 if userns else 0)
        else:
            nproc = _processes_of_current_user() + limits.max_processes
        rlimits = {
            "RLIMIT_AS": limits.memory_bytes,
            "RLIMIT_FSIZE": limits.file_bytes,
            "RLIMIT_NPROC": nproc,
            "RLIMIT_CORE": 0,
            "RLIMIT_CPU": int(deadline) + 2,
        }
        full_job = dict(job)
        full_job["memory_bytes"] = limits.memory_bytes
        full_job["stdout_cap"] = limits.stdout_chars
        full_job["isolation"] = {
            "userns": userns,
            "netns": limits.isolate_network and isolation.network_namespace,
            "mountns": isolation.mount_namespace and not userns,
            "tmpfs_bytes": limits.tmpfs_bytes,
            "rlimits": rlimits,
            "uid": uid,
            "uid_run_lock": None if run_lock is None else str(run_lock),
            "env": env,
        }
        with open(os.open(run_dir / "job.pkl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            pickle.dump(full_job, handle, protocol=pickle.HIGHEST_PROTOCOL)
        for name in ("result.jsonl", "stderr.txt"):
            os.close(os.open(run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        started = time.monotonic()
        served = False
        for _attempt in range(2):  # a zygote that died before it started the run is replaced once
            if _zygote().run(run_dir, deadline):
                served = True
                break
            if (run_dir / "worker.status").exists():  # its supervisor had begun: killed below, never run twice
                break
        seconds = time.monotonic() - started
        status: dict[str, Any] = {}
        if served:
            with contextlib.suppress(OSError, ValueError):
                status = json.loads((run_dir / "status.json").read_text())
        else:
            # the zygote died or hung: what it started must not outlive the run
            if uid is not None:
                kill_uid(uid)
            with contextlib.suppress(OSError, ValueError, ProcessLookupError, PermissionError):
                os.killpg(int((run_dir / "worker.pid").read_text()), signal.SIGKILL)
            status = {"returncode": None, "timed_out": False}
        result_fd = os.open(run_dir / "result.jsonl", os.O_RDONLY)
        try:
            records = _read_records(result_fd, limits.result_bytes)
        finally:
            os.close(result_fd)
        stderr_path = run_dir / "stderr.txt"
        with open(stderr_path, "rb") as handle:
            handle.seek(max(0, stderr_path.stat().st_size - limits.stderr_bytes))
            stderr_tail = handle.read().decode("utf-8", "replace")
        if not served:
            stderr_tail += "\nsandbox zygote failed"
        cpu = status.get("cpu_seconds")
        rss = status.get("max_rss_kb")
        return RunOutput(
            records,
            bool(status.get("timed_out")),
            status.get("returncode"),
            stderr_tail,
            seconds,
            float(cpu) if isinstance(cpu, int | float) else None,
            int(rss) * 1024 if isinstance(rss, int) else None,
        )
