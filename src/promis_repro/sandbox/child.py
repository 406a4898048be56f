"""The untrusted side of the sandbox: runs one job in a fresh interpreter.

This file runs as a long-lived "zygote" (``python -s -P child.py``) started by
``promis_repro.sandbox.runner``, one per worker thread. It must only import the
standard library, so that nothing of the harness is importable from inside the
sandbox. Per run, the zygote forks a *supervisor* that enforces the deadline and
cleans up, and the supervisor forks the *worker* that runs the program. The file
system the program sees is the same in both modes (``build_root``): an allow-list
(the system's programs, libraries and configuration, /sys, the interpreter's
prefixes) bound read-only under a fresh root, a /dev with a few harmless devices,
a fresh /proc, and private size-capped tmpfs over the working directory, /tmp,
/var/tmp and /dev/shm, the only writable places; no homes, no /run (no sockets).

- As root: the worker enters new network and mount namespaces, builds that root,
  sets resource limits and drops to the run's dedicated uid, chosen for this run
  alone, so the supervisor can later kill every process the program left behind
  with one ``kill(-1)`` issued as that uid.
- As an ordinary user (SLURM jobs, Apptainer): the supervisor enters a new user
  namespace and unshares PID, IPC and network namespaces; its child, the PID
  namespace's init, builds the root in its own mount namespace and forks the
  worker, which sets resource limits and drops every capability; when the init
  ends, the kernel kills whatever the program left in the namespace.

Then the worker:
1. Closes every descriptor except the result channel. (The job, written by the
   trusted parent, was read before.)
2. Runs the program. Every observation (an output value, an exception, a
   timeout) is written to the result channel as one JSON line. Values are *encoded* into a
   tagged JSON form that the parent decodes into genuine builtin objects, so
   that comparisons happen in the trusted process: an object whose ``__eq__``
   always returns True cannot be encoded and counts as a failure.

The encoding (decoded by ``promis_repro.sandbox.values``): JSON null, bools,
ints, floats and strings stand for themselves (non-finite floats as JSON
NaN/Infinity); a JSON list is a Python list; every JSON object is a tag:
``{"t": [...]}`` tuple, ``{"s": [...]}`` set, ``{"fs": [...]}`` frozenset,
``{"d": [[k, v], ...]}`` dict, ``{"b": "<hex>"}`` bytes,
``{"ih": "<hex>"}`` an int of more than BIG_INT_BITS bits, ``{"c": [re, im]}``
complex, ``{"sub": "<type name>", "v": <encoded base value>}`` an instance of
a subclass of one of those builtins (a namedtuple, a numpy float64, ...), and
``{"opaque": "<type name>"}`` anything else (never equal to an expected value),
and ``{"digest": "<sha256>"}`` a value too large to send (see digest_if_large).

The file is one script (it runs as ``child.py``, importing nothing of the project); its sections, in
order: value encoding; the result channel; isolation; the program's runtime (time limits, captured
output, the EvalPlus guard); the three job kinds; the worker, its supervisor and the zygote.
"""

import builtins
import contextlib
import copy
import ctypes
import ctypes.util
import fcntl
import hashlib
import io
import json
import marshal
import os
import pickle
import resource
import signal
import sys
import time

RESULT_FD = -1  # opened by worker()
NOTES = []  # what containment could not do here (the probe reports them)
MAX_ENCODE_DEPTH = 200
MAX_ENCODE_NODES = 5_000_000
DIGEST_THRESHOLD_BYTES = 4 << 20
BIG_INT_BITS = 4096

# --------------------------------------------------------------------------
# value encoding
# --------------------------------------------------------------------------


class EncodeLimit(Exception):
    pass


_EXACT = (type(None), bool, int, float, str)
_BASES = (bool, int, float, str, complex, bytes, bytearray, tuple, list, dict, set, frozenset)


def _type_name(value):
    cls = type(value)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


def encode(value, _depth=0, _budget=None):
    """Encode a value; never calls a method the value's own class defines."""
    if _budget is None:
        _budget = [MAX_ENCODE_NODES]
    _budget[0] -= 1
    if _budget[0] < 0:
        raise EncodeLimit("value too large to compare")
    if _depth > MAX_ENCODE_DEPTH:
        raise EncodeLimit("value nested too deeply to compare")
    cls = type(value)
    if cls is int and int.bit_length(value) > BIG_INT_BITS:
        # decimal conversion of huge ints is quadratic (and capped by
        # sys.int_max_str_digits); hexadecimal is linear both ways
        return {"ih": int.__format__(value, "x")}
    if cls in _EXACT:
        return value
    nxt = _depth + 1
    if cls is list:
        return [encode(v, nxt, _budget) for v in list.__iter__(value)]
    if cls is tuple:
        return {"t": [encode(v, nxt, _budget) for v in tuple.__iter__(value)]}
    if cls is dict:
        return {"d": [[encode(k, nxt, _budget), encode(v, nxt, _budget)] for k, v in dict.items(value)]}
    if cls is set:
        return {"s": [encode(v, nxt, _budget) for v in set.__iter__(value)]}
    if cls is frozenset:
        return {"fs": [encode(v, nxt, _budget) for v in frozenset.__iter__(value)]}
    if cls is bytes or cls is bytearray:
        return {"b": bytes.hex(bytes(value))}
    if cls is complex:
        return {"c": [complex.__getattribute__(value, "real"), complex.__getattribute__(value, "imag")]}
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and not isinstance(value, _BASES):
        # numpy integer/bool scalars are not int subclasses; EvalPlus compares
        # them with ``==`` against Python values, so compare their value.
        return {"sub": _type_name(value), "v": encode(value.item(), nxt, _budget)}
    for base in _BASES:
        if isinstance(value, base):
            return {"sub": _type_name(value), "v": encode(_as_base(value, base), nxt, _budget)}
    return {"opaque": _type_name(value)}


def _as_base(value, base):
    """Copy a builtin-subclass instance into its base type via the base's own slots."""
    if base is bool:
        return bool(int.__int__(value))
    if base is int:
        return int.__int__(value)
    if base is float:
        return float.__float__(value)
    if base is str:
        return str.__str__(value)
    if base is complex:
        return complex(complex.__getattribute__(value, "real"), complex.__getattribute__(value, "imag"))
    if base in (bytes, bytearray):
        return bytes(memoryview(value))
    if base is dict:
        return dict(dict.items(value))
    return base(base.__iter__(value))


def digest_if_large(value, exact_only=True):
    """``{"digest": sha256}`` of a large all-builtin value's marshal (version 2) form, else None.

    marshal refuses every non-builtin type (subclasses included) and writes
    equal structures identically (version 2 has no back-references), in C:
    the cheap way to compare outputs of millions of elements. Only values
    whose byte equality means ``==`` are digested (see _digest_safe).
    """
    try:
        raw = marshal.dumps(value, 2)
    except (ValueError, MemoryError):
        return None
    if len(raw) <= DIGEST_THRESHOLD_BYTES or (exact_only and not _digest_safe(value)):
        return None
    return {"digest": hashlib.sha256(raw).hexdigest()}


def _digest_safe(value, budget=10_000):
    """True when byte equality of the marshal form means ``==`` (checked on the first ``budget`` items).

    Floats (tolerance, -0.0), dicts and sets (order), and bools (``True == 1``)
    compare differently from their bytes; values holding them are sent whole.
    """
    stack = [value]
    while stack and budget > 0:
        item = stack.pop()
        budget -= 1
        cls = type(item)
        if cls in (list, tuple):
            stack.extend(item[:budget])
        elif cls not in (str, bytes, int, type(None)):
            return False
    return True


# --------------------------------------------------------------------------
# result channel
# --------------------------------------------------------------------------


def emit(record):
    data = (json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        written = os.write(RESULT_FD, view)
        view = view[written:]


def encode_for_parent(value):
    """The encoded value, or its digest when it is large (see digest_if_large).

    A large value whose digest would be stricter than ``==`` (it holds floats,
    bools, dicts or sets) is sent whole when that is feasible; past
    MAX_ENCODE_NODES it is digested anyway, which beats not comparing it at all.
    """
    digest = digest_if_large(value)
    if digest is not None:
        return digest
    try:
        return encode(value)
    except EncodeLimit:
        digest = digest_if_large(value, exact_only=False)
        if digest is None:
            raise
        return digest


def emit_value(record, value, operands=False):
    """Send one observed value (or, for an assert probe, each operand on its own) to the parent."""
    try:
        if operands:
            record["v"] = [encode_for_parent(v) for v in value]
        else:
            record["v"] = encode_for_parent(value)
    except (EncodeLimit, RecursionError, MemoryError) as exc:
        record.pop("v", None)
        record["err"] = f"{type(exc).__name__}: {exc}"
    try:
        emit(record)
    except ValueError as exc:  # an int too long for JSON, a lone surrogate, ...
        emit({k: v for k, v in record.items() if k != "v"} | {"err": f"unencodable output: {exc}"})


def describe(exc):
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}"[:500]


# --------------------------------------------------------------------------
# isolation: as root (a dedicated uid) or, for an ordinary user, in user namespaces
# --------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (the unified syscall table, Linux 5.12)
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: all the program sees of the machine's file system, read-only: the system's programs, libraries and
#: configuration, /sys, and the interpreter's own prefixes (bound in at the same paths). Not the users'
#: homes, /run (their sockets: D-Bus, container engines), /var, /opt, /srv or the project.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
#: device nodes bound into a fresh /dev (nothing else there: no terminals, no disks)
DEVICES = ("null", "zero", "full", "random", "urandom")


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what)


def _under(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _mount_attributes(libc, path, attr_set, attr_clr, flags):
    class MountAttr(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]

    attr = MountAttr(attr_set, attr_clr, 0, 0)
    result = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr))
    _check(result, f"mount_setattr on {path} (Linux 5.12 or later is needed)")


def _pivot_root(libc, root):
    """Make ``root`` the process's ``/`` and detach the old root entirely."""
    old = os.path.join(root, ".old")
    os.mkdir(old)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown architecture {os.uname().machine}")
    _check(libc.syscall(number, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", MNT_DETACH), "detaching the old root")
    os.rmdir("/.old")


def build_root(libc, spec, workdir):
    """A private mount namespace's new root, from an allow-list (in the calling process's mount namespace).

    A tmpfs becomes ``/``: ``SYSTEM_PATHS`` and the interpreter's prefixes bound read-only, a /dev with
    ``DEVICES`` only, a fresh /proc, and private size-capped tmpfs over /tmp, /var/tmp, /dev/shm and the
    working directory (at its own path, then entered), the only writable places.
    """
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    root = os.path.join(os.path.dirname(workdir), "root")
    os.mkdir(root, 0o755)
    _check(libc.mount(b"tmpfs", root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=8m,mode=0755"), "root tmpfs")
    prefixes = sorted(
        {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    )
    bound = []
    for path in (*SYSTEM_PATHS, *prefixes):
        if os.path.islink(path) and path in SYSTEM_PATHS:  # merged /usr: /bin -> usr/bin
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path) and not any(_under(path, done) for done in bound):
            os.makedirs(root + path, mode=0o755, exist_ok=True)
            _check(libc.mount(path.encode(), (root + path).encode(), None, MS_BIND | MS_REC, None), f"bind of {path}")
            bound.append(path)
    os.mkdir(root + "/dev", 0o755)
    for name in DEVICES:
        node = f"{root}/dev/{name}"
        open(node, "w").close()
        _check(libc.mount(f"/dev/{name}".encode(), node.encode(), None, MS_BIND, None), f"bind of /dev/{name}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc", mode=0o755)
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"proc", (root + "/proc").encode(), b"proc", flags, None) != 0:
        # inside a container whose /proc is partly masked the kernel refuses a fresh one to a user namespace;
        # the outer one would show processes outside the run, so the program gets no /proc at all
        if not spec.get("userns"):
            raise OSError(ctypes.get_errno(), "mount of /proc")
        NOTES.append("no /proc in the sandbox: this container's /proc is masked, so no fresh one can be mounted")
    elif spec.get("userns"):  # no nested user namespaces: they would give the program capabilities (and mounts)
        with contextlib.suppress(OSError), open(root + "/proc/sys/user/max_user_namespaces", "w") as handle:
            handle.write("0")
    size = f"size={spec['tmpfs_bytes']},mode=1777".encode()
    scratch = ["/tmp", "/var/tmp", "/dev/shm", workdir]
    for target in scratch:
        os.makedirs(root + target, mode=0o755, exist_ok=True)
        _check(libc.mount(b"tmpfs", (root + target).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size), f"tmpfs {target}")
    _pivot_root(libc, root)
    _mount_attributes(libc, "/", MOUNT_ATTR_RDONLY, 0, AT_RECURSIVE)
    for target in scratch:
        _mount_attributes(libc, target, 0, MOUNT_ATTR_RDONLY, 0)
    os.chdir(workdir)


def enter_user_namespace(spec):
    """Ordinary user: a new user namespace (the user's uid and gid mapped to themselves), then new PID,
    IPC and (unless the job allows the network) network namespaces for the processes forked next."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER), "unshare of a user namespace")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {gid} 1")
    flags = CLONE_NEWPID | CLONE_NEWIPC | (CLONE_NEWNET if spec.get("netns") else 0)
    _check(libc.unshare(flags), "unshare of PID/IPC/network namespaces")


def contain(spec, workdir):
    """The PID namespace's first process, with the user namespace's capabilities: its own mount namespace
    and the allow-listed root (``build_root``)."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare of a mount namespace")
    build_root(libc, spec, workdir)


def drop_capabilities(libc):
    """No capabilities left in the user namespace, and none to regain through exec (no_new_privs)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.capset(ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()), "dropping capabilities")


def set_limits(limits):
    """The run's rlimits, each at most the hard limit this process already has (a site may set lower ones)."""
    for name, value in limits.items():
        which = getattr(resource, name)
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def isolate(spec, workdir):
    """Apply what ``spec`` asks of the worker: as root its own network and mount namespaces with the
    allow-listed root, then rlimits and the drop to the run's dedicated uid; under user namespaces
    (``contain`` already built the root, in PID 1) rlimits and the drop of every capability."""
    libc = _libc()
    if not spec.get("userns"):
        flags = (CLONE_NEWNET if spec.get("netns") else 0) | (CLONE_NEWNS if spec.get("mountns") else 0)
        if flags:
            _check(libc.unshare(flags), "unshare failed")
        if spec.get("mountns"):
            build_root(libc, spec, workdir)
        else:
            os.chdir(workdir)
    set_limits(spec["rlimits"])
    uid = spec.get("uid")
    if uid is not None:
        os.chown(".", uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if spec.get("userns"):
        drop_capabilities(libc)
    os.environ.clear()
    os.environ.update(spec["env"])


# --------------------------------------------------------------------------
# the program's runtime
# --------------------------------------------------------------------------


class Timeout(Exception):
    """Raised by SIGALRM. An ``Exception``, like EvalPlus's TimeoutException, so that programs which
    swallow exceptions behave as they do under EvalPlus; the group budget and the supervisor's
    deadline bound what such a program can do with the time."""


def _on_alarm(signum, frame):
    raise Timeout()


class CappedSink(io.TextIOBase):
    """Write-only text sink that keeps the first ``cap`` characters (an output flood cannot fill memory)."""

    def __init__(self, cap=8192):
        self.cap = cap
        self.parts = []
        self.size = 0

    def writable(self):
        return True

    def readable(self):
        return False

    def write(self, text):
        if self.size < self.cap:
            text = str(text)
            self.parts.append(text[: self.cap - self.size])
            self.size += len(self.parts[-1])
        return len(text)

    def read(self, *args):
        raise OSError("stdin is not readable here")

    readline = read

    def getvalue(self):
        return "".join(self.parts)


class swallow_io:  # noqa: N801 - mirrors EvalPlus's context manager of the same name
    def __enter__(self):
        self.saved = sys.stdout, sys.stderr, sys.stdin
        sink = CappedSink()
        sys.stdout = sys.stderr = sys.stdin = sink
        return sink

    def __exit__(self, *exc):
        sys.stdout, sys.stderr, sys.stdin = self.saved
        return False


def time_limit(seconds):
    # reinstalled every time, as EvalPlus does: a program that replaced the
    # handler at import gets it back for each test
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def clear_time_limit():
    signal.setitimer(signal.ITIMER_REAL, 0)


_GUARD_MODULE = None


def run_limited(record, seconds, function, *args):
    """``function(*args)`` with its output swallowed, under a time limit of ``seconds``.

    Returns ``(True, value)``; on a timeout or any exception the record is marked with it, sent to
    the parent, and ``(False, None)`` is returned.
    """
    try:
        with swallow_io():
            time_limit(seconds)
            try:
                return True, function(*args)
            finally:
                clear_time_limit()
    except Timeout:
        record["timeout"] = True
    except BaseException as exc:
        record["err"] = describe(exc)
    emit(record)
    return False, None


def timed_call(fn, args):
    """``fn(*args)`` and the seconds it took (EvalPlus's per-input timing)."""
    started = time.time()
    out = fn(*args)
    return out, time.time() - started


def load_evalplus_guard_source():
    """Load EvalPlus's ``eval/utils.py`` (its ``reliability_guard``) without importing the evalplus package.

    Done once in the zygote, so that each run only calls the function. The
    modules the guard imports (shutil, subprocess, ...) are imported here too.
    """
    global _GUARD_MODULE
    import importlib.util
    import platform  # noqa: F401 - imported by the guard module
    import shutil  # noqa: F401
    import subprocess  # noqa: F401
    import tempfile  # noqa: F401

    spec = importlib.util.find_spec("evalplus")
    if spec is None or not spec.submodule_search_locations:
        return
    path = os.path.join(next(iter(spec.submodule_search_locations)), "eval", "utils.py")
    module_spec = importlib.util.spec_from_file_location("_evalplus_eval_utils", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    _GUARD_MODULE = module


def load_evalplus_guard():
    """EvalPlus's own ``reliability_guard``."""
    if _GUARD_MODULE is None:
        raise RuntimeError("evalplus is not installed; it provides the reliability guard")
    return _GUARD_MODULE.reliability_guard


def resolve_entry_point(globals_, entry_point):
    """``name`` or ``Class().method`` (APPS problems written as LeetCode classes)."""
    if "()." in entry_point:
        owner, method = entry_point.split("().", 1)
        return getattr(globals_[owner](), method)
    return globals_[entry_point]


# --------------------------------------------------------------------------
# the three job kinds: call (EvalPlus inputs), assert (probes), stdio (APPS)
# --------------------------------------------------------------------------


def run_call(job):
    """EvalPlus's ``unsafe_execute`` loop, minus the comparison (done by the parent)."""
    guard = load_evalplus_guard() if job["guard"] else None
    if guard is not None:
        guard(maximum_memory_bytes=job["memory_bytes"])
    globals_ = {}
    try:
        with swallow_io():
            exec(compile(job["code"], "<solution>", "exec"), globals_)
    except BaseException as exc:
        emit({"load_error": describe(exc)})
        return
    emit({"loaded": True})  # the import ran to its end (the execution level), whatever it defined
    try:
        with swallow_io():
            fn = resolve_entry_point(globals_, job["entry_point"])
    except BaseException as exc:
        emit({"load_error": describe(exc)})
        return
    record_time = job.get("record_time", False)
    for group_index in job["groups_to_run"]:
        group = job["groups"][group_index]
        emit({"group": group_index})
        # EvalPlus gives each group its own process with a wall-clock budget;
        # past it the group stops here as if killed (the parent calls it a timeout)
        deadline = time.monotonic() + group.get("budget", float("inf"))
        out_of_time = False
        for index, (args, limit) in enumerate(zip(group["inputs"], group["time_limits"])):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out_of_time = True
                break
            record = {"g": group_index, "i": index}
            if record_time:
                args = copy.deepcopy(args)
            finished, result = run_limited(record, min(limit, remaining), timed_call, fn, args)
            if not finished:
                continue
            out, elapsed = result
            if record_time:
                record["t"] = elapsed
            encoding_started = time.monotonic()
            emit_value(record, out)
            # EvalPlus compares live objects in place; sending values costs us
            # more, so that time does not count against the group's budget
            deadline += time.monotonic() - encoding_started
        if out_of_time:
            emit({"group_timeout": group_index})
            continue
        emit({"done": group_index})


def run_assert(job):
    """Run asserts rewritten into probes: operands are encoded here, compared by the parent."""
    import ast

    pristine = dict(builtins.__dict__)
    guard = load_evalplus_guard() if job["guard"] else None
    if guard is not None:
        guard(maximum_memory_bytes=job["memory_bytes"])
    candidate_name = "__promis_candidate__"
    cand = {"__name__": candidate_name}
    try:
        with swallow_io():
            exec(compile(job["code"], "<solution>", "exec"), cand)
    except BaseException as exc:
        emit({"load_error": describe(exc)})
        return
    emit({"loaded": True})

    def sanitize(value):
        # candidate-defined classes never reach the test code: their special
        # methods could answer any comparison
        checked, stack = 0, [value]
        while stack and checked < 100_000:
            item = stack.pop()
            checked += 1
            cls = type(item)
            if getattr(cls, "__module__", None) == candidate_name:
                raise TypeError(f"returned an instance of the program's own class {cls.__qualname__}")
            if cls in (list, tuple, set, frozenset):
                stack.extend(item)
            elif cls is dict:
                stack.extend(item.keys())
                stack.extend(item.values())
        return value

    def wrap(fn):
        def wrapped(*args, **kwargs):
            return sanitize(fn(*args, **kwargs))

        return wrapped

    tests = {"__builtins__": pristine, "__name__": "__promis_tests__"}
    tree = ast.parse(job["test_code"])
    wanted = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for name in wanted:
        if name in cand and name not in pristine:
            value = cand[name]
            tests[name] = wrap(value) if callable(value) and not isinstance(value, type) else value
    entry = job.get("entry_point")
    if entry and entry in cand:
        tests[entry] = wrap(cand[entry])

    limit = job["time_limit"]

    def runtime(aid, thunk):
        record = {"a": aid}
        finished, values = run_limited(record, limit, thunk)
        if finished:
            emit_value(record, values, operands=True)

    tests["__promis_check__"] = runtime
    tests["__promis_bool__"] = pristine["bool"]
    code = compile(job["test_code"], "<tests>", "exec")
    try:
        with swallow_io():
            exec(code, tests)
            if job.get("call"):
                exec(compile(job["call"], "<tests>", "exec"), tests)
    except Timeout:
        emit({"abort": "timeout"})
        return
    except BaseException as exc:
        emit({"abort": describe(exc)})
        return
    emit({"done": 0})


def run_stdio(job):
    """Run a stdin/stdout program once per case, each in fresh globals; stdout is captured."""
    code = job["code"]
    try:
        compiled = compile(code, "<solution>", "exec")
    except BaseException as exc:
        emit({"load_error": describe(exc)})
        return
    emit({"loaded": True})
    for index, (stdin_text, limit) in enumerate(zip(job["inputs"], job["time_limits"])):
        # fd 0 gets the case too, for programs that read ``open(0)``
        path = f"stdin_{index}.txt"
        with open(path, "w") as handle:
            handle.write(stdin_text)
        fd = os.open(path, os.O_RDONLY)
        if fd != 0:  # the previous case may have closed fd 0 (``open(0)`` closes it when collected)
            os.dup2(fd, 0)
            os.close(fd)
        out = CappedSink(cap=job["stdout_cap"])
        saved = sys.stdin, sys.stdout
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, closefd=False)))
        sys.stdout = out
        record = {"i": index}
        try:
            time_limit(limit)
            try:
                exec(compiled, {"__name__": "__main__", "__builtins__": builtins})
            finally:
                clear_time_limit()
        except SystemExit as exc:
            if exc.code not in (None, 0):
                record["err"] = f"SystemExit: {exc.code}"
        except Timeout:
            record["timeout"] = True
        except BaseException as exc:
            record["err"] = describe(exc)
        finally:
            sys.stdin, sys.stdout = saved
        record["stdout"] = out.getvalue()
        emit(record)
    emit({"done": 0})


# the parent's last line to a zygote (``zygote``): it has removed every run directory it was given
GOODBYE = "bye\n"


RUNNERS = {"call": run_call, "assert": run_assert, "stdio": run_stdio}


# --------------------------------------------------------------------------
# the worker, its supervisor and the zygote that forks them
# --------------------------------------------------------------------------


def open_channels(run_dir):
    """The run's result channel and stderr file, opened before any mount can hide the run directory."""
    result = os.open(os.path.join(run_dir, "result.jsonl"), os.O_WRONLY | os.O_APPEND)
    stderr = os.open(os.path.join(run_dir, "stderr.txt"), os.O_WRONLY | os.O_APPEND)
    return result, stderr


def worker(run_dir, job, channels):
    """The sandboxed process: isolate, then run the job; never returns."""
    global RESULT_FD
    try:
        os.setsid()
        RESULT_FD, stderr = channels
        null = os.open(os.devnull, os.O_RDWR)
        # the zygote's protocol pipes sit on fds 0 and 1: replace them before
        # anything else runs, so the program can never write a verdict there
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(stderr, 2)
        keep = sorted({0, 1, 2, RESULT_FD})
        for low, high in zip(keep, [*keep[1:], 1 << 16]):
            os.closerange(low + 1, high)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        sys.setrecursionlimit(max(1000, job.get("recursion_limit", 1000)))
        isolate(job["isolation"], os.path.join(run_dir, "work"))
        signal.signal(signal.SIGALRM, _on_alarm)
        started = time.monotonic()
        RUNNERS[job["mode"]](job)
        emit({"exit": True, "seconds": time.monotonic() - started})
    except BaseException as exc:
        try:
            os.write(2, f"sandbox worker failed: {describe(exc)}\n".encode())
        except BaseException:
            pass
        os._exit(70)
    os._exit(0)


def kill_uid(uid):
    """SIGKILL every process of ``uid``: ``kill(-1)`` from a forked helper running as that uid.

    Reaches processes that left the run's session or process group; the
    kernel holds the task list while it signals, so a fork bomb cannot outrun it.
    """
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(helper, 0)


def _kill_leftovers(uid, pid):
    """SIGKILL everything the run started: every process of its uid (root), the process itself (under user
    namespaces the PID namespace's init, whose end ends the namespace) and its session's process group."""
    if uid is not None:
        kill_uid(uid)
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def namespace_init(run_dir, job, channels, status_fd):
    """PID 1 of the run's PID namespace (user namespaces): contain, fork the worker, reap, report its status.

    When this process ends, the kernel kills every process left in the namespace: nothing the program
    started outlives the run, and ``kill(-1)`` from inside reaches nothing outside.
    """
    code = 72
    try:
        os.setsid()  # the parent's last resort kills this session
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the supervisor's end is the namespace's end
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)  # the zygote's handlers mean nothing here
        contain(job["isolation"], os.path.join(run_dir, "work"))
        pid = os.fork()
        if pid == 0:
            worker(run_dir, job, channels)
        for fd in channels:
            os.close(fd)
        while True:  # reap everything (orphans come to PID 1) until the worker ends
            reaped, status = os.waitpid(-1, 0)
            if reaped == pid:
                break
        # then everything else the run left, killed and reaped here, before this process ends: so their CPU
        # time and memory count in this process's children's account, which the supervisor reads
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # in a PID namespace: every process of it but this one
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        os.write(status_fd, str(os.waitstatus_to_exitcode(status)).encode())
        code = 0
    except BaseException as exc:
        try:
            os.write(2, f"sandbox namespace failed: {describe(exc)}\n".encode())
            os.write(channels[1], f"sandbox namespace failed: {describe(exc)}\n".encode())
        except BaseException:
            pass
    finally:
        os._exit(code)


def _reap_children(timeout):
    """Reap every child left (killed orphans of the run) until none is left or ``timeout`` seconds pass."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            reaped, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if reaped == 0:
            time.sleep(0.01)


def supervise(run_dir, deadline):
    """Fork the worker (root) or the namespace's init (user namespaces), enforce the wall-clock deadline,
    clean up, write status.json."""
    import select

    with open(os.path.join(run_dir, "job.pkl"), "rb") as handle:
        # the job comes from the trusted parent, so unpickling it is safe;
        # nothing flows back to the parent through pickle
        job = pickle.load(handle)
    run_lock = job["isolation"].get("uid_run_lock")
    if run_lock:  # root: this run's uid is taken until this process ends, after killing all of the uid's
        fcntl.flock(os.open(run_lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600), fcntl.LOCK_EX)
    channels = open_channels(run_dir)
    userns = job["isolation"].get("userns")
    status_path = os.path.join(run_dir, "worker.status")
    status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if userns:  # this supervisor is disposable: it joins the new user namespace itself
        enter_user_namespace(job["isolation"])
    else:
        # the run's orphans (a process the program forked and never waited for) come here, to be reaped
        # after the kill below: their CPU time and memory then count in this process's children's account
        # (under user namespaces the namespace's init reaps them, and this process reaps the init)
        _check(_libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    pid = os.fork()
    if pid == 0:
        if userns:
            namespace_init(run_dir, job, channels, status_fd)
        worker(run_dir, job, channels)
    for fd in (*channels, status_fd):
        os.close(fd)
    with open(os.path.join(run_dir, "worker.pid"), "w") as handle:
        handle.write(str(pid))  # it leads its own session: the parent's last resort kills it by this
    uid = job["isolation"].get("uid")
    started = time.monotonic()
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd], [], [], deadline)
    timed_out = not ready
    _kill_leftovers(uid, pid)  # under user namespaces: the init, and with it the whole PID namespace
    _, status = os.waitpid(pid, 0)
    # every process the run started is dead by now (the kill above): reap the orphans that came here
    _reap_children(timeout=5.0)
    # the kernel's account of every process of the run this supervisor reaped, directly or through the
    # processes it reaped (the worker, its orphans; the namespace's init and all it reaped): the program
    # can neither forge it nor hide work in a child from it
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    if userns:  # the worker's own status, as PID 1 reported it (none when the namespace was killed)
        with open(status_path) as handle:
            reported = handle.read().strip()
        code = int(reported) if reported else code
    with open(os.path.join(run_dir, "status.json"), "w") as handle:
        json.dump(
            {
                "returncode": code,
                "timed_out": timed_out,
                "seconds": time.monotonic() - started,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss,
            },
            handle,
        )


def zygote():
    """Serve runs: one line ``RUN_DIR<TAB>DEADLINE`` in, one line ``done`` out, per run.

    Imports happen once here; each run is a fork of this warm process, which
    saves the interpreter start-up that would otherwise dominate short jobs.

    The parent removes each run's directory once it has read it, and says ``GOODBYE`` before it closes
    this process's input. Input that ends without it, or a ``done`` that cannot be sent, means the parent
    was killed (SIGKILL, or SIGTERM's default action: a SLURM job out of time): then nobody will read or
    remove the last run's directory, so this process removes it.
    """
    sys.set_int_max_str_digits(0)
    load_evalplus_guard_source()
    last_run = None
    for line in sys.stdin:
        if line == GOODBYE:
            os._exit(0)
        run_dir, deadline = line.rstrip("\n").split("\t")
        last_run = run_dir
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                supervise(run_dir, float(deadline))
            except BaseException as exc:
                os.write(2, f"sandbox supervisor failed: {describe(exc)}\n".encode())
                code = 71
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        try:
            sys.stdout.write(f"done\t{os.waitstatus_to_exitcode(status)}\n")
            sys.stdout.flush()
        except BrokenPipeError:
            break
    if last_run is not None:
        import shutil

        shutil.rmtree(last_run, ignore_errors=True)
    os._exit(0)  # not sys.exit: its flush of a stdout nobody reads would fail again


def probe(mode):
    """Exit 0 when this process can contain a run in ``mode`` ("root": network and mount namespaces with
    the allow-listed root; "user-namespace": the same inside user and PID namespaces, process counts per
    namespace); else print why and exit 1."""
    import shutil
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="promis-sbx-probe-")
    os.mkdir(os.path.join(run_dir, "work"))
    spec = {"tmpfs_bytes": 1 << 20, "userns": mode == "user-namespace", "netns": True, "mountns": True}
    try:
        if spec["userns"]:
            enter_user_namespace(spec)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if spec["userns"]:
                    contain(spec, os.path.join(run_dir, "work"))
                    _probe_process_counts()
                else:
                    _check(_libc().unshare(CLONE_NEWNET | CLONE_NEWNS), "unshare of network and mount namespaces")
                    build_root(_libc(), spec, os.path.join(run_dir, "work"))
                for note in NOTES:
                    print(f"note: {note}", flush=True)
                code = 0
            except BaseException as exc:
                print(describe(exc), file=sys.stderr)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    except OSError as exc:
        print(describe(exc), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _probe_process_counts():
    """The process cap must count inside the user namespace (Linux 5.14): with a cap of 3, this process
    and the prober are 2, so one more fork fits only if the count starts in the namespace."""
    resource.setrlimit(resource.RLIMIT_NPROC, (3, 3))
    try:
        child = os.fork()
    except OSError:
        raise OSError(0, "process counts are not per user namespace (Linux 5.14 or later is needed)") from None
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        sys.exit(probe(sys.argv[2]))
    zygote()
