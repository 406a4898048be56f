"""`promis-repro models lock`: hub branches pinned to commits once, against a stand-in hub on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from promis_repro.cli import main
from promis_repro.errors import UserError
from promis_repro.generation import registry
from promis_repro.stages import models as models_stage

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_test_token"


class _Hub(BaseHTTPRequestHandler):
    """The hub's model-info API: ``/api/models/{repo}/revision/{branch}``; ``org/gated`` needs the token."""

    def do_GET(self) -> None:
        prefix = "/api/models/"
        repo, _, branch = self.path.removeprefix(prefix).partition("/revision/")
        known = {
            ("org/open", "main"): COMMIT,
            ("org/open", "dev"): COMMIT[1:] + "0",
            ("org/gated", "main"): COMMIT[::-1],
        }
        if not self.path.startswith(prefix) or (repo, branch) not in known:
            self._reply(404, {"error": "Repository not found"})
        elif repo == "org/gated" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, {"error": "Access to model org/gated is restricted"})
        else:
            self._reply(200, {"id": repo, "modelId": repo, "sha": known[repo, branch], "siblings": []})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")  # no token from the machine's own login
    yield endpoint
    server.shutdown()


@pytest.fixture
def model_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    entry = {"backend": "transformers-causal", "dtype": "float32", "context_length": 2048}
    entry.update(prompt_format="instruct", revision="main")
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump({"open-model": {**entry, "hub_id": "org/open"}, "gated-model": {**entry, "hub_id": "org/gated"}})
    )
    monkeypatch.setenv("PROMIS_REPRO_MODELS", str(path))
    monkeypatch.delenv("PROMIS_REPRO_MODELS_LOCK", raising=False)
    registry._load_registry.cache_clear()
    yield path
    registry._load_registry.cache_clear()


def test_an_unpinned_hub_model_is_refused_where_it_is_fetched_or_loaded(model_registry, tmp_path):
    from promis_repro.generation.weights import weights_location

    spec = registry.get_model("open-model")
    assert not spec.pinned
    with pytest.raises(UserError, match="models lock"):
        models_stage.fetch("open-model", tmp_path / "record.json")
    with pytest.raises(UserError, match="branch, not a commit"):
        weights_location(spec)


def test_lock_pins_each_branch_to_its_commit_and_runs_load_it(hub, model_registry, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the gated model needs it, as meta-llama's do
    assert main(["models", "lock"]) == 0
    lock = yaml.safe_load((model_registry.parent / "models.lock.yaml").read_text())
    assert lock["open-model"]["revision"] == COMMIT and lock["open-model"]["branch"] == "main"
    assert lock["gated-model"]["revision"] == COMMIT[::-1]
    spec = registry.get_model("open-model")
    assert spec.pinned and spec.revision == COMMIT and spec.identity()["revision"] == COMMIT
    # the hub is not asked again: a run loads the pin even when the hub has moved on or is gone
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    registry._load_registry.cache_clear()
    assert registry.get_model("gated-model").revision == COMMIT[::-1]


def test_a_gated_model_without_a_token_is_one_line_naming_it(hub, model_registry, capsys):
    assert main(["models", "lock", "--models", "gated-model"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "org/gated@main" in error


def test_a_lock_for_another_branch_is_refused(hub, model_registry, monkeypatch):
    models_stage.lock(["open-model"])
    text = model_registry.read_text().replace("revision: main", "revision: dev")
    model_registry.write_text(text)
    registry._load_registry.cache_clear()
    with pytest.raises(UserError, match="rerun `promis-repro models lock`"):
        registry.get_model("open-model")
    models_stage.lock(["open-model"])  # relocking is not blocked by the stale entry it replaces
    assert registry.get_model("open-model").revision == COMMIT[1:] + "0"


def test_a_corrupt_lock_names_the_file(model_registry):
    (model_registry.parent / "models.lock.yaml").write_text("open-model: {hub_id: org/open, revision: main}\n")
    with pytest.raises(UserError, match=r"models\.lock\.yaml"):
        registry.get_model("open-model")


def test_cells_of_two_revisions_of_one_model_are_not_aggregated(tmp_path):
    from promis_repro.stages.aggregate import aggregate

    def cell(seed: int, revision: str) -> Path:
        path = tmp_path / "m" / "mbppplus" / "direct" / f"seed{seed}" / "metrics.json"
        path.parent.mkdir(parents=True)
        identity = {"name": "m", "hub_id": "org/m", "revision": revision, "source": "hub"}
        path.write_text(json.dumps({"provenance": {"model": {"generator": identity, "rewriter": identity}}}))
        return path

    files = [cell(1, COMMIT), cell(2, COMMIT[::-1])]
    with pytest.raises(UserError, match=r"mix revisions of model m: org/m@0123.* and org/m@7654") as caught:
        aggregate(tmp_path, [str(f) for f in files])
    assert "\n" not in str(caught.value)
