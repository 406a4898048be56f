"""Every benchmark's online path, against stand-ins for GitHub and the Hugging Face hub on 127.0.0.1.

Three local servers play the release host (github.com), the raw-file host (raw.githubusercontent.com)
and the hub, each under the real host's URL layout, and serve the real files from the shared data
directory. The endpoints are pointed at them and the cache at a temporary directory, with no data
directory, so every file comes through the same code a machine with internet uses.

APPS is the exception: its original test split (``test.jsonl`` of ``codeparrot/apps``) is not on this
machine, only MapCoder's reformatted 128-problem subset is. The hub stand-in therefore serves an
original-format ``test.jsonl`` built here from that subset, and the pinned sha256 is swapped for this
fixture's own: the download, the pin check, the cache and the parse run end to end, but on a derived
file, not the real one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promis_repro.cli import main
from promis_repro.data import registry, sources
from promis_repro.data.registry import load_benchmark
from promis_repro.data.sources import APPS_TEST, DATA_FILES, MBPP_COMMIT
from promis_repro.data.task import CallTests, StdioTests, Task
from promis_repro.errors import UserError
from promis_repro.io import read_jsonl

ONLINE = ("mbpp", "mbpp_sanitized", "mbppplus", "humanevalplus", "apps")
PAPER_BENCHMARKS = ["mbpp", "mbppplus", "humanevalplus", "apps"]  # config/config.yaml, data_dir: null
RAW_MBPP = f"/google-research/google-research/{MBPP_COMMIT}/mbpp"
HUB_PATH = f"/datasets/{APPS_TEST.repo_id}/resolve/{APPS_TEST.revision}/{APPS_TEST.filename}"
UNSENT_TOKEN = "hf_must_not_reach_the_server"
DEAD = "http://127.0.0.1:9"  # nothing listens there


@dataclass
class Host:
    """What one stand-in server serves, and the requests it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> path (GitHub sends assets elsewhere)
    hub: bool = False  # answer with the headers huggingface_hub requires of a /resolve/ URL
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:  # huggingface_hub asks for a file's metadata first
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        host = self.server.host
        host.requests.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path in host.redirects:
            self.send_response(302)
            self.send_header("Location", host.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = host.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        if host.hub:
            # what the hub sends for a file tracked by LFS: the commit resolved, the content's sha256 as
            # its ETag and its size (hf_hub_download refuses an answer without commit and ETag)
            etag = hashlib.sha256(data).hexdigest()
            self.send_header("X-Repo-Commit", APPS_TEST.revision)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: Host) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.host = host

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def original_apps_row(task: Task) -> dict[str, object]:
    """A MapCoder-subset task written back in APPS's original ``test.jsonl`` format (a test fixture).

    The tests are the ones the local loader parsed, so the online parse must give them back exactly.
    """
    tests = task.hidden_tests
    if isinstance(tests, CallTests):
        assert tests.expected is not None
        io = {"fn_name": tests.entry_point.split(".")[-1], "inputs": tests.groups["tests"]}
        io["outputs"] = tests.expected["tests"]
    else:
        assert isinstance(tests, StdioTests)
        io = {"inputs": [stdin for stdin, _ in tests.cases], "outputs": [stdout for _, stdout in tests.cases]}
    return {
        "id": int(task.task_id),  # the file's own key; the old datasets script renamed it problem_id
        "question": task.prompt,
        "solutions": "",
        "input_output": json.dumps(io),
        "difficulty": task.difficulty,
        "url": "",
        "starter_code": task.starter_code,
    }


def sanitized_array(data_dir: Path) -> bytes:
    """google-research's ``sanitized-mbpp.json``, rebuilt from the stored JSONL (PROVENANCE.md section 2)."""
    rows = [row for _, row in read_jsonl(data_dir / "mbpp_sanitized.jsonl")]
    text = json.dumps(rows)
    assert len(text) == 255_053  # the length of the google-research file at 30adf0ec
    return text.encode()


@dataclass
class Mirror:
    github: _Server
    raw: _Server
    hub: _Server
    originals: dict[tuple[str, str], bytes]  # (host name, path) -> the untampered bytes
    apps_tasks: list[Task]

    def hosts(self) -> dict[str, Host]:
        return {"github": self.github.host, "raw": self.raw.host, "hub": self.hub.host}

    def tamper(self, host: str, path: str) -> None:
        data = bytearray(self.originals[(host, path)])
        middle = len(data) // 2
        data[middle : middle + 1] = b"X" if data[middle : middle + 1] != b"X" else b"Y"  # size unchanged
        self.hosts()[host].files[path] = bytes(data)

    def restore(self) -> None:
        for (host, path), data in self.originals.items():
            self.hosts()[host].files[path] = data


#: where each online file sits: (host name, path served, the path GitHub redirects a release download to)
LAYOUT = {
    "mbpp": ("raw", f"{RAW_MBPP}/mbpp.jsonl"),
    "mbpp_sanitized": ("raw", f"{RAW_MBPP}/sanitized-mbpp.json"),
    "mbppplus": ("github", "/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz"),
    "humanevalplus": ("github", "/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz"),
    "apps": ("hub", HUB_PATH),
}


@pytest.fixture(scope="module")
def mirror(data_dir: Path) -> Iterator[Mirror]:
    apps_tasks = load_benchmark("apps", data_dir)  # the local subset, parsed by the MapCoder loader
    apps_file = "".join(json.dumps(original_apps_row(t)) + "\n" for t in apps_tasks).encode()
    github = Host()
    for key in ("mbppplus", "humanevalplus"):
        # like github.com, answer a release download with a redirect to the asset's storage
        asset = f"/release-assets/{DATA_FILES[key].name}"
        github.redirects[LAYOUT[key][1]] = asset
        github.files[asset] = (data_dir / DATA_FILES[key].name).read_bytes()
    raw = Host(files={LAYOUT["mbpp"][1]: (data_dir / "mbpp.jsonl").read_bytes()})
    raw.files[LAYOUT["mbpp_sanitized"][1]] = sanitized_array(data_dir)
    hub = Host(files={HUB_PATH: apps_file}, hub=True)
    servers = [_Server(host) for host in (github, raw, hub)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    originals = {
        (name, path): data
        for name, host in zip(("github", "raw", "hub"), (github, raw, hub))
        for path, data in host.files.items()
    }
    yield Mirror(*servers, originals=originals, apps_tasks=apps_tasks)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def online(mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    """The endpoints at the mirror, an empty cache, no data directory; APPS pinned to the fixture."""
    import huggingface_hub.constants

    monkeypatch.setenv(sources.GITHUB_RELEASES, mirror.github.url)
    monkeypatch.setenv(sources.GITHUB_RAW, mirror.raw.url)
    monkeypatch.setenv(sources.HF_ENDPOINT, mirror.hub.url)  # after huggingface_hub was imported: read per call
    monkeypatch.setenv("PROMIS_REPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROMIS_REPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_TOKEN", UNSENT_TOKEN)  # a login on the machine must not reach a mirror
    # huggingface_hub read HF_HUB_OFFLINE when imported; this test is online, whatever the shell said
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    fixture_hash = hashlib.sha256(mirror.originals[("hub", HUB_PATH)]).hexdigest()
    monkeypatch.setattr(sources, "APPS_TEST", replace(APPS_TEST, sha256=fixture_hash))
    monkeypatch.setattr("promis_repro.data.apps.APPS_TEST", sources.APPS_TEST)
    for host in mirror.hosts().values():
        host.requests.clear()
    registry._load.cache_clear()  # tasks loaded from other places must not stand in for the mirror's
    yield mirror
    mirror.restore()
    registry._load.cache_clear()


def fetched_paths(mirror: Mirror) -> set[tuple[str, str, str]]:
    return {(name, method, path) for name, host in mirror.hosts().items() for method, path, _ in host.requests}


def test_every_benchmark_loads_from_the_mirror(online: Mirror, tmp_path: Path, data_dir: Path):
    for name in ONLINE:
        local = load_benchmark(name, data_dir) if name != "apps" else online.apps_tasks
        tasks = load_benchmark(name)
        assert [t.task_id for t in tasks] == [t.task_id for t in local], name
        if name != "apps":  # a byte copy (or, for sanitized MBPP, an exact conversion) of the stored file
            assert tasks == local, name
    requested = fetched_paths(online)
    for name, (host, path) in LAYOUT.items():
        assert (host, "GET", path) in requested, name
    assert ("hub", "HEAD", HUB_PATH) in requested  # huggingface_hub's metadata call
    assert all(auth is None for host in online.hosts().values() for _, _, auth in host.requests)
    cached = tmp_path / "cache" / "data"
    assert sorted(p.name for p in cached.iterdir()) == sorted(DATA_FILES[k].name for k in ONLINE if k != "apps")


def test_apps_parses_the_original_format_end_to_end(online: Mirror):
    tasks = load_benchmark("apps")
    assert len(tasks) == 128
    for task, local in zip(tasks, online.apps_tasks):
        assert task.extra == {"format": "apps"} and local.extra == {"format": "mapcoder"}
        assert (task.task_id, task.prompt, task.difficulty, task.starter_code) == (
            local.task_id,
            local.prompt,
            local.difficulty,
            local.starter_code,
        )
        assert task.entry_point == local.entry_point
        assert task.hidden_tests == local.hidden_tests  # exact arguments and expected values
        assert task.source_hash == sources.APPS_TEST.sha256
    kinds = {type(t.hidden_tests) for t in tasks}
    assert kinds == {CallTests, StdioTests}


def test_paper_config_data_split_runs_against_the_mirror(
    online: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "data"
    # rules/data.smk with config/config.yaml (data_dir: null): no --data-dir, the paper's benchmarks
    assert main(["data", "split", "--benchmarks", *PAPER_BENCHMARKS, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads((out / "decontamination.json").read_text())
    assert report["evaluation_benchmarks"] == PAPER_BENCHMARKS
    assert report["provenance"]["data_hashes"] == {
        "mbpp": DATA_FILES["mbpp"].sha256,
        "mbppplus": DATA_FILES["mbppplus"].sha256,
        "humanevalplus": DATA_FILES["humanevalplus"].sha256,
        "apps": sources.APPS_TEST.sha256,
    }
    counts = report["counts"]
    assert counts["train_pool"] + counts["selection_pool"] + counts["removed"] == 374 + 90
    assert counts["removed_id"] == 147  # the MBPP+ ids, as with the local files

    # a later run finds every file in the cache, checks it, and asks no server
    for variable in (sources.GITHUB_RELEASES, sources.GITHUB_RAW, sources.HF_ENDPOINT):
        monkeypatch.setenv(variable, DEAD)
    registry._load.cache_clear()
    assert [len(load_benchmark(name)) for name in PAPER_BENCHMARKS] == [974, 378, 164, 128]


def cached_payloads(cache: Path) -> list[Path]:
    """Downloaded files in the cache (ours, and huggingface_hub's blobs and snapshot links)."""
    hub = [p for p in (cache / "huggingface").glob("*/*/**/*") if p.parent.name != ".locks" and not p.is_dir()]
    return [*(cache / "data").glob("*"), *[p for p in hub if {"blobs", "snapshots"} & set(p.parts)]]


@pytest.mark.parametrize("key", ONLINE)
def test_a_tampered_mirror_file_is_one_line_error_and_never_cached(online: Mirror, tmp_path: Path, key: str):
    host, path = LAYOUT[key]
    served = online.github.host.redirects.get(path, path)  # a release download is served from its asset path
    online.tamper(host, served)
    expected = sources.APPS_TEST.sha256 if key == "apps" else DATA_FILES[key].sha256
    with pytest.raises(UserError) as caught:
        load_benchmark(key)
    message = str(caught.value)
    assert "\n" not in message
    assert f"expected {expected}" in message and "has sha256 " in message
    assert (APPS_TEST.filename if key == "apps" else DATA_FILES[key].name) in message
    assert cached_payloads(tmp_path / "cache") == []

    online.restore()
    registry._load.cache_clear()
    assert load_benchmark(key)  # nothing stale stands in the way once the mirror is right again


def test_a_tampered_file_stops_data_split_with_one_line(online: Mirror, tmp_path: Path, capsys):
    online.tamper("raw", LAYOUT["mbpp"][1])
    assert main(["data", "split", "--benchmarks", *PAPER_BENCHMARKS, "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("promis-repro: error: data file mbpp.jsonl")
    assert f"expected {DATA_FILES['mbpp'].sha256}" in err
    assert not (tmp_path / "cache" / "data" / "mbpp.jsonl").exists()


def test_a_cached_file_that_fails_its_pin_is_fetched_again(online: Mirror, tmp_path: Path):
    cached = tmp_path / "cache" / "data" / "mbpp.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"{}\n")  # e.g. written by a version that did not check before caching
    assert len(load_benchmark("mbpp")) == 974
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == DATA_FILES["mbpp"].sha256


def test_an_unreachable_host_or_a_missing_file_is_one_line_error(online: Mirror, monkeypatch: pytest.MonkeyPatch):
    del online.hub.host.files[HUB_PATH]  # a mirror without the file: the hub answers 404
    with pytest.raises(UserError, match=r"could not download test\.jsonl of codeparrot/apps@21e74ddf from") as caught:
        load_benchmark("apps")
    assert "\n" not in str(caught.value)
    # (an unreachable hub is retried by huggingface_hub for about 20 s before it gives up: not run here)
    monkeypatch.setenv(sources.GITHUB_RAW, DEAD)
    with pytest.raises(UserError, match=r"data file mbpp\.jsonl .* not found, and could not download") as caught:
        load_benchmark("mbpp")
    assert "\n" not in str(caught.value)


def test_huge_integers_in_apps_tests_parse():
    from promis_repro.data.apps import task_from_original

    digits = "1" + "0" * 5000  # past Python's default 4,300-digit limit on int <-> str
    row = {
        "id": 1,
        "question": "Return the number.",
        "input_output": '{"fn_name": "f", "inputs": [[1]], "outputs": [' + digits + "]}",
        "difficulty": "interview",
        "starter_code": "def f(x):\n",
    }
    tests = task_from_original(row).hidden_tests
    assert isinstance(tests, CallTests)
    assert tests.expected == {"tests": [10**5000]}
