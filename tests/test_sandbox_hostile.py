"""Hostile programs: each is contained, scored as a failure, and the harness survives.

CI runs this file twice, as root (a dedicated uid per run) and as an ordinary user (user
namespaces), with the same expectations.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from promis_repro.data.task import AssertTests, CallTests
from promis_repro.evaluation.execute import ExpectedOutputs, run_assert_tests, run_call_tests
from promis_repro.sandbox.runner import SANDBOX_UID_RANGE, SandboxLimits, detect_isolation

CORRECT = "def f(x):\n    return x + 1\n"
TESTS = CallTests(entry_point="f", groups={"base": [[1], [2]], "plus": [[10]]}, oracle="evalplus-mbpp")
EXPECTED = ExpectedOutputs(values={"base": [2, 3], "plus": [11]}, time_limits={"base": [1.0, 1.0], "plus": [1.0]})
ASSERTS = AssertTests(setup="", asserts=["assert f(1) == 2", "assert set(g([1, 2])) == {1, 2}"], entry_point="f")
ASSERT_CORRECT = CORRECT + "def g(xs):\n    return list(xs)\n"
REPO = Path(__file__).resolve().parents[1]


def score(code: str, limits: SandboxLimits | None = None):
    return run_call_tests(code, TESTS, EXPECTED, limits=limits)


def _namespace(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def sandbox_processes(grace: float = 10.0) -> list[int]:
    """Processes still running after ``grace`` seconds as a sandbox uid (root) or in a PID namespace other than
    ours among this user's processes (user namespaces); SIGKILLed ones need a moment to be reaped."""
    ours = _namespace("self", "pid")
    me = os.getuid()
    deadline = time.monotonic() + grace
    while True:
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    owner = entry.stat().st_uid
                except OSError:
                    continue
                if owner in SANDBOX_UID_RANGE or (owner == me and _namespace(entry.name, "pid") not in (ours, None)):
                    found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def assert_contained(result, statuses=("fail", "error", "timeout")) -> None:
    assert result.status in statuses, result
    assert not result.passed
    assert sandbox_processes() == []


def test_correct_program_passes():
    result = score(CORRECT)
    assert result.status == "pass"
    assert [g.details for g in result.groups] == [[1, 1], [1]]


def test_correct_assert_program_passes():
    assert run_assert_tests(ASSERT_CORRECT, ASSERTS).status == "pass"


def test_infinite_loop_in_call_times_out_per_input():
    started = time.monotonic()
    result = score("def f(x):\n    while True:\n        pass\n")
    assert_contained(result, ("timeout",))
    assert time.monotonic() - started < 20


def test_loop_that_ignores_alarm_is_killed_at_the_deadline():
    code = (
        "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" + "def f(x):\n    while True:\n        pass\n"
    )
    started = time.monotonic()
    result = score(code)
    assert_contained(result, ("timeout",))
    assert time.monotonic() - started < 30


def test_fork_bomb():
    code = (
        "import posix\n"
        "def f(x):\n"
        "    while True:\n"
        "        try:\n"
        "            posix.fork()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    result = score(code)
    assert_contained(result)


def test_memory_bomb():
    result = score("def f(x):\n    return len(bytearray(20 * 1024 ** 3)) and x + 1\n")
    assert_contained(result)
    assert any("MemoryError" in f.message for f in result.failures)


def test_disk_filling_is_capped_and_leaves_nothing_behind():
    code = (
        "import os\n"
        "def f(x):\n"
        "    with os.fdopen(os.open('big.bin', os.O_WRONLY | os.O_CREAT), 'wb') as h:\n"
        "        while True:\n"
        "            h.write(b'0' * (1 << 20))\n"
    )
    free_before = os.statvfs("/").f_bavail
    result = score(code, SandboxLimits(file_bytes=32 << 20, tmpfs_bytes=64 << 20))
    assert_contained(result)
    # nothing close to the cap remains on the host disk
    assert (free_before - os.statvfs("/").f_bavail) * os.statvfs("/").f_frsize < 16 << 20


def test_output_flood_through_print_and_raw_fd():
    printed = score("def f(x):\n    while True:\n        print('x' * 10000)\n")
    assert_contained(printed, ("timeout",))
    raw = score(
        "import os\ndef f(x):\n    while True:\n        os.write(1, b'x' * 65536)\n        os.write(2, b'y' * 65536)\n"
    )
    assert_contained(raw)


@pytest.mark.parametrize(
    "prelude",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "import atexit, os\natexit.register(lambda: print('PASS'))\nraise SystemExit(0)\n",
        "print('PASS')\nprint('{\"exit\": true}')\nraise SystemExit(0)\n",
    ],
    ids=["sys.exit", "os._exit", "atexit", "print-pass"],
)
def test_exiting_before_the_tests_is_not_a_pass(prelude):
    assert_contained(score(prelude + CORRECT))
    assert_contained(run_assert_tests(prelude + ASSERT_CORRECT, ASSERTS))


def test_writing_fake_verdicts_to_every_descriptor_is_not_a_pass():
    code = (
        "import os\n"
        "for fd in range(64):\n"
        "    try:\n"
        '        os.write(fd, b\'{"g": 0, "i": 0, "v": 2}\\n{"done": 0}\\n{"exit": true}\\n\')\n'
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n" + CORRECT
    )
    assert_contained(score(code))


def test_killing_the_parent_and_everything_else():
    # a bystander process of the harness's own user: kill(-1) from the program must not reach it
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        code = (
            "import os, signal\n"
            "def f(x):\n"
            f"    for pid in (os.getppid(), 1, -1, {os.getpid()}, {bystander.pid}):\n"
            "        try:\n"
            "            os.kill(pid, signal.SIGKILL)\n"
            "        except Exception:\n"
            "            pass\n"
            "    return x + 1\n"
        )
        result = score(code.replace("os.kill", "__import__('posix').kill"))
        # the program may kill itself (kill -1 reaches its own uid or namespace); the harness goes on
        assert result.status in ("pass", "fail", "error", "timeout")
        assert bystander.poll() is None, "kill(-1) from the sandbox reached a process outside it"
        assert score(CORRECT).status == "pass"
        assert sandbox_processes() == []
    finally:
        bystander.kill()
        bystander.wait()


def test_child_process_that_never_exits_and_holds_the_pipes():
    code = "import posix, time\nif posix.fork() == 0:\n    posix.setsid()\n    time.sleep(1000)\n" + CORRECT
    started = time.monotonic()
    result = score(code)
    assert time.monotonic() - started < 20
    assert result.status in ("pass", "fail")  # the program itself is correct
    assert sandbox_processes() == []


def _accepting(server: socket.socket) -> tuple[threading.Thread, list[object]]:
    """A started thread that records every connection ``server`` accepts for 5 s, and the list it fills."""
    server.settimeout(0.2)
    accepted: list[object] = []

    def accept() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    return thread, accepted


def _victim_base(where: str) -> Path | None:
    """Where the user keeps files: their home, the host's /tmp, or elsewhere (a directory the user owns
    outside both, from PROMIS_REPRO_SANDBOX_VICTIM_DIR; root's default is the checkout)."""
    if where == "home":
        return Path.home()
    if where == "tmp":
        return Path(tempfile.mkdtemp(prefix="promis-victim-"))
    chosen = os.environ.get("PROMIS_REPRO_SANDBOX_VICTIM_DIR")
    if chosen:
        return Path(chosen)
    return REPO if os.geteuid() == 0 else None


@pytest.mark.parametrize("where", ["home", "tmp", "elsewhere"])
def test_files_outside_the_working_directory_are_untouched(where):
    # the sandbox sees an allow-listed, read-only file system; root's runs also have a uid of their own
    base = _victim_base(where)
    if base is None:
        pytest.skip("set PROMIS_REPRO_SANDBOX_VICTIM_DIR to a directory this user owns outside home and /tmp")
    outside = base / ".promis-repro-victim"
    outside.mkdir(exist_ok=True)
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    try:
        code = (
            "import posix\n"
            f"victim = {str(victim)!r}\n"
            "def f(x):\n"
            "    for action in (lambda: posix.unlink(victim),\n"
            "                   lambda: posix.open(victim, posix.O_WRONLY | posix.O_TRUNC),\n"
            f"                   lambda: posix.open({str(outside / 'new.txt')!r}, posix.O_WRONLY | posix.O_CREAT)):\n"
            "        try:\n"
            "            action()\n"
            "        except OSError:\n"
            "            pass\n"
            "    return x + 1\n"
        )
        score(code)
        if not detect_isolation().contained:
            pytest.skip("weak containment (no user namespaces, not root): file protection rests on the Python guard")
        assert victim.read_text() == "keep me"
        assert not (outside / "new.txt").exists()
    finally:
        for path in outside.iterdir():
            path.unlink()
        outside.rmdir()
        if where == "tmp":
            base.rmdir()


def test_the_users_files_are_not_readable():
    # a secret in the user's home: the program passes only if reading it fails (posix: past EvalPlus's guard)
    secret = Path.home() / ".promis-repro-secret"
    secret.write_text("token")
    try:
        code = (
            "import posix\n"
            "def f(x):\n"
            "    try:\n"
            f"        posix.read(posix.open({str(secret)!r}, posix.O_RDONLY), 5)\n"
            "    except OSError:\n"
            "        return x + 1\n"
            "    return -1\n"
        )
        assert score(code).status == "pass"
        assert sandbox_processes() == []
    finally:
        secret.unlink()


def test_unix_sockets_outside_are_unreachable():
    # a socket anyone may connect to (a user's D-Bus or container engine socket lives like this in /run)
    base = _victim_base("elsewhere")
    if base is None:
        pytest.skip("set PROMIS_REPRO_SANDBOX_VICTIM_DIR to a directory this user owns outside home and /tmp")
    path = base / ".promis-repro-socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)
    server.listen(1)
    thread, accepted = _accepting(server)
    try:
        code = (
            "import socket\n"
            "def f(x):\n"
            "    try:\n"
            "        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"        s.connect({str(path)!r})\n"
            "        s.sendall(b'leak')\n"
            "    except OSError:\n"
            "        return x + 1\n"
            "    return -1\n"
        )
        result = score(code)
        thread.join()
        assert accepted == [] and result.status == "pass"
    finally:
        server.close()
        path.unlink()


def test_tcp_connect_to_a_local_port_fails():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    thread, accepted = _accepting(server)
    code = (
        "import socket\n"
        "def f(x):\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n"
        "    return x + 1\n"
    )
    result = score(code)
    thread.join()
    server.close()
    if not detect_isolation().network_namespace:
        pytest.skip("no network namespace on this kernel (weak containment)")
    assert accepted == []
    assert_contained(result)


def test_always_equal_object_never_passes():
    code = (
        "class Eq:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    __hash__ = object.__hash__\n"
        "class EqInt(int):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "def f(x):\n"
        "    return Eq() if x < 5 else EqInt(0)\n"
        "def g(xs):\n"
        "    return Eq()\n"
    )
    assert_contained(score(code))
    assert_contained(run_assert_tests(code, ASSERTS))


def test_shadowing_builtins_the_tests_use():
    code = (
        "import builtins\n"
        "builtins.set = lambda *a: 1\n"
        "builtins.len = lambda *a: 0\n"
        "def set(*a):\n"
        "    return 1\n"
        "def f(x):\n"
        "    return x + 1\n"
        "def g(xs):\n"
        "    return [99]\n"
    )
    result = run_assert_tests(code, ASSERTS)
    assert result.groups[0].details == [1, 0]
    assert_contained(result)


def test_patching_the_child_runtime_cannot_forge_assert_verdicts():
    # code aimed at this harness: it replaces the sandbox's emitter so that every
    # operand it sends equals the other one; the expected side never reaches it
    code = (
        "import sys\n"
        "runtime = sys.modules['__main__']\n"
        "original = runtime.emit_value\n"
        "def forged(record, values, operands=False):\n"
        "    original(record, [values[-1]] * len(values) if operands else values, operands)\n"
        "runtime.emit_value = forged\n"
        "def f(x):\n"
        "    return -1\n"
        "def g(xs):\n"
        "    return []\n"
    )
    result = run_assert_tests(code, ASSERTS)
    assert result.status == "fail" and result.error is not None and "AttributeError" not in result.error
    assert result.groups[0].details == [0, 0]
    assert_contained(result)


HIDDEN_WORK = """
import posix as _posix, time as _time
_read, _write = _posix.pipe()
if _posix.fork() == 0:  # a helper does the work; the program reads its answer and never waits for it
    _ends = _time.process_time() + 0.6
    while _time.process_time() < _ends:
        pass
    _posix.write(_write, b"x")
    _time.sleep(60)
_posix.read(_read, 1)
"""


def test_work_hidden_in_an_unwaited_child_still_counts():
    """The efficiency level's CPU account covers the run's orphans (root: the supervisor is their subreaper;
    user namespaces: the namespace's init reaps them): forking the work away does not make a program fast."""
    plain, hidden = score(CORRECT), score(HIDDEN_WORK + CORRECT)
    assert plain.passed and hidden.passed and hidden.executed
    assert hidden.cpu_seconds >= plain.cpu_seconds + 0.5, (plain.cpu_seconds, hidden.cpu_seconds)
    assert not sandbox_processes()  # and the helper is gone


HARNESS = """
import shutil, sys, time
sys.path.insert(0, {tests!r})
from test_sandbox_hostile import CORRECT, score
if not {mid_run!r}:  # as if killed after reading the run's results, before removing its directory
    shutil.rmtree = lambda *args, **kwargs: None
print(score(CORRECT).status, flush=True)
if {mid_run!r}:
    score("import time\\ntime.sleep(3)\\n" + CORRECT)
print("idle", flush=True)
time.sleep(300)
"""


def _harness(scratch: Path, mid_run: bool) -> subprocess.Popen:
    """A harness process (``HARNESS``) with its own TMPDIR, once it has scored a first program; ``mid_run``:
    once its second program's run has started (it sleeps 3 s)."""
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS.format(tests=str(REPO / "tests"), mid_run=mid_run)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert harness.stdout.readline().strip() == "pass"
    if mid_run:
        deadline = time.monotonic() + 60
        while not any(scratch.glob("promis-sbx-*/worker.pid")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(scratch.glob("promis-sbx-*/worker.pid"))
    else:
        assert harness.stdout.readline().strip() == "idle"
    return harness


def _kill(harness: subprocess.Popen) -> None:
    os.killpg(harness.pid, signal.SIGKILL)
    harness.wait()


@pytest.mark.parametrize("mid_run", [False, True], ids=["between-runs", "during-a-run"])
def test_a_killed_harness_leaves_no_run_directory(tmp_path, mid_run):
    """A harness process killed (SIGKILL; SIGTERM's default action alike: a SLURM job out of time) cannot
    remove the run directory it was using: its zygote, which outlives it, does. Killed after a run (the
    harness here skips its own removal, as if killed just before it), the zygote sees its input end without
    the goodbye; killed during one, it cannot send its ``done``."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    harness = _harness(scratch, mid_run)
    try:
        if not mid_run:
            assert len(list(scratch.glob("promis-sbx-*/status.json"))) == 1  # the run is over, its directory left
    finally:
        _kill(harness)
    deadline = time.monotonic() + 30
    while list(scratch.glob("promis-sbx-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("promis-sbx-*")) == []
    assert sandbox_processes() == []


def test_a_killed_harness_keeps_its_uid_until_its_run_is_over(tmp_path):
    """As root each run gets a uid of its own, leased by the harness; a run outlives a killed harness until its
    deadline, when its supervisor kills every process of that uid. A run given the uid meanwhile would die
    with it (or meet the orphan's processes): the supervisor holds the uid until its run is over, and a lease
    skips a uid held so. (Under user namespaces no uid is shared: the run must pass all the same.)"""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    _kill(_harness(scratch, mid_run=True))
    # the orphaned run ends within 3 s and kills its uid's processes; this one runs 6 s
    result = score("import time\ntime.sleep(6)\n" + CORRECT)
    assert result.status == "pass", result
    assert sandbox_processes() == []


EXITING_HARNESS = """
import glob, os, sys, threading, time
sys.path.insert(0, {tests!r})
from test_sandbox_hostile import CORRECT, score
threading.Thread(target=score, args=("import time\\ntime.sleep(8)\\n" + CORRECT,), daemon=True).start()
while not glob.glob(os.path.join(os.environ["TMPDIR"], "promis-sbx-*", "worker.pid")):
    time.sleep(0.02)
"""  # then the interpreter exits, its exit handlers running while the thread still waits on the run


def test_a_harness_exiting_during_a_run_leaves_the_run_to_end(tmp_path):
    """An interrupted harness (Ctrl-C: the CLI returns and the exit handlers run while worker threads still wait
    on their runs) neither says goodbye to a busy zygote, which would leave the run's directory behind, nor
    kills it, which would kill the run's supervisor (the holder of its uid) and not its program."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", EXITING_HARNESS.format(tests=str(REPO / "tests"))],
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    deadline = time.monotonic() + 30
    while list(scratch.glob("promis-sbx-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("promis-sbx-*")) == []
    assert sandbox_processes() == []


def test_a_uid_lease_needs_a_lock_directory_no_one_else_writes_to(tmp_path, monkeypatch):
    from promis_repro.errors import UserError
    from promis_repro.sandbox import runner

    locks = tmp_path / "uids"
    locks.mkdir()
    locks.chmod(0o777)  # another user could plant or hold the locks
    monkeypatch.setattr(runner, "UID_LOCK_DIRS", (locks,))
    with pytest.raises(UserError, match="no one else writes to"), runner._lease_uid():
        pass
    locks.chmod(0o700)
    with runner._lease_uid() as (uid, run_lock):
        assert uid in SANDBOX_UID_RANGE and run_lock.parent == locks
    # where the first place cannot be made (a read-only /run), the next
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    monkeypatch.setattr(runner, "UID_LOCK_DIRS", (read_only / "uids", tmp_path / "fallback"))
    if os.geteuid() != 0:  # root writes into a directory whatever its mode
        assert runner.uid_lock_dir() == tmp_path / "fallback"
    monkeypatch.setattr(runner, "UID_LOCK_DIRS", (tmp_path / "missing" / "uids", tmp_path / "fallback"))
    assert runner.uid_lock_dir() == tmp_path / "fallback"


def test_printing_pass_does_not_pass():
    code = "def f(x):\n    print('PASS')\n    print('All tests passed')\n    return 0\n"
    assert_contained(score(code))


def test_harness_process_survives_everything():
    # after all of the above, this process is alive and the sandbox still works
    assert score(CORRECT).status == "pass"


def test_the_isolation_in_force_is_reported_and_weak_containment_refused(monkeypatch):
    from promis_repro.errors import UserError
    from promis_repro.sandbox import runner

    isolation = detect_isolation()
    assert isolation.mode == ("root" if os.geteuid() == 0 else "user-namespace"), isolation
    assert isolation.contained and isolation.network_namespace and isolation.mount_namespace
    weak = runner.Isolation(False, False, False, ("not root and no user namespaces (refused)",), "weak")
    monkeypatch.setattr(runner, "detect_isolation", lambda: weak)
    monkeypatch.delenv(runner.ALLOW_WEAK, raising=False)
    with pytest.raises(UserError, match=r"cannot contain generated code here.*--allow-weak-sandbox"):
        score(CORRECT)
    monkeypatch.setenv(runner.ALLOW_WEAK, "1")
    assert runner.require_containment() is weak  # an explicit decision, and what summary.json records
