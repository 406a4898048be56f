"""Decontaminated pools: what training may ever see."""

from __future__ import annotations

import json

import pytest

from promis_repro.cli import main
from promis_repro.data.registry import load_benchmark


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("split")
    assert main(["data", "split", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pools_exclude_every_mbppplus_id(split_dir, data_dir):
    plus_ids = {t.task_id.split("/")[-1] for t in load_benchmark("mbppplus", data_dir)}
    train, selection = read(split_dir / "train_pool.jsonl"), read(split_dir / "selection_pool.jsonl")
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in selection} == {"validation"}
    pooled = {r["task_id"] for r in train + selection}
    assert pooled.isdisjoint(plus_ids)
    report = json.loads((split_dir / "decontamination.json").read_text())
    by_id = [r for r in report["removed"] if "id" in r["reasons"]]
    assert len(by_id) == 147
    assert sum(r["pool"] == "train_pool" for r in by_id) == 108
    assert sum(r["pool"] == "selection_pool" for r in by_id) == 39
    assert all(r["nearest"]["task_id"] == f"Mbpp/{r['task_id']}" for r in by_id)


def test_counts_add_up_and_every_removal_is_explained(split_dir):
    report = json.loads((split_dir / "decontamination.json").read_text())
    counts = report["counts"]
    assert counts["train_pool"] + counts["selection_pool"] + counts["removed"] == 374 + 90
    assert counts["train_pool"] <= 374 - 108 and counts["selection_pool"] <= 90 - 39
    assert report["threshold"] == 0.9 and report["embedder"] == "all-minilm-l6-v2"
    for removed in report["removed"]:
        assert removed["reasons"] and removed["nearest"]["benchmark"] in {"mbpp", "mbppplus", "humanevalplus", "apps"}
        if removed["reasons"] == ["embedding"]:
            assert removed["nearest"]["similarity"] >= 0.9
    assert report["provenance"]["data_hashes"]["mbpp"].startswith("ccf64cea")


def test_a_lower_threshold_removes_more(tmp_path, data_dir, split_dir):
    assert main(["data", "split", "--data-dir", str(data_dir), "--out", str(tmp_path), "--threshold", "0.8"]) == 0
    strict = json.loads((tmp_path / "decontamination.json").read_text())["counts"]
    default = json.loads((split_dir / "decontamination.json").read_text())["counts"]
    assert strict["removed"] > default["removed"]
