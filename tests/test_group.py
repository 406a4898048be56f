"""Group jobs (``group_cells``): staged cells are taken over only when they answer the cell's own request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import job_counts, run_snakemake

from promis_repro.generation.base import DecodingSettings
from promis_repro.generation.cache import cache_key
from promis_repro.io import atomic_write_json
from promis_repro.stages import group as group_stage
from promis_repro.stages.evaluate import evaluate_cell
from promis_repro.stages.run import RUN_REQUEST_KEYS, run


@pytest.fixture
def inputs(tmp_path):
    """The files a run's request hashes: a strategy file and the pools."""
    config = tmp_path / "strategy.yaml"
    config.write_text("max_generator_calls: 2\n")
    pools = tmp_path / "data"
    pools.mkdir()
    (pools / "decontamination.json").write_text("{}")
    return {"config_path": str(config), "pools": str(pools)}


def _arguments(inputs, **changes):
    arguments = {key: None for key in RUN_REQUEST_KEYS}
    arguments.update(strategy="direct", model="smollm2-135m-instruct", rewriter=None, benchmark="humanevalplus", seed=1)
    arguments.update(feedback="visible", limit=2, batch_size=32, protocol="ours", **inputs)
    arguments.update(changes)
    return arguments


def _stage(directory: Path, request: dict, files=group_stage.RUN_FILES) -> None:
    directory.mkdir(parents=True)
    for name in files:
        (directory / name).write_text(json.dumps({"staged": name}) + "\n")
    atomic_write_json(directory / group_stage.REQUEST, group_stage.run_request(**request))


def test_a_staged_cell_answering_the_same_request_is_moved_in_and_spent(tmp_path, inputs, monkeypatch):
    import promis_repro.strategies.runner as runner

    monkeypatch.setattr(runner, "run_together", lambda *a, **k: pytest.fail("the cell ran instead of adopting"))
    arguments = _arguments(inputs)
    staged = tmp_path / "groups" / "direct"
    _stage(staged, arguments)
    cell = tmp_path / "cell"
    run(**arguments, out=cell, adopt=staged)
    for name in group_stage.RUN_FILES:
        assert json.loads((cell / name).read_text()) == {"staged": name}
        assert not (staged / name).exists()
    # spent: a rerun of the cell (its files deleted) finds nothing staged and runs alone
    assert not group_stage.adopt_staged(staged, cell, group_stage.REQUEST, {}, group_stage.RUN_FILES)


@pytest.mark.parametrize(
    "change",
    [{"seed": 2}, {"limit": 3}, {"strategy": "ga_only"}, {"config": "max_generator_calls: 3\n"}, {"pools": "{ }"}],
)
def test_a_staged_cell_for_another_request_is_never_taken(tmp_path, inputs, monkeypatch, change):
    staged = tmp_path / "groups" / "direct"
    _stage(staged, _arguments(inputs))
    asked = _arguments(inputs)
    if "config" in change:
        Path(inputs["config_path"]).write_text(change["config"])  # same path, other settings
    elif "pools" in change:
        (Path(inputs["pools"]) / "decontamination.json").write_text(change["pools"])
    else:
        asked.update(change)

    class Ran(Exception):
        pass

    def ran(*args, **kwargs):
        raise Ran

    # past the adoption check, the run starts by reading its settings: stop it there
    monkeypatch.setattr("promis_repro.strategies.config.load_strategy_file", ran)
    with pytest.raises(Ran):
        run(**asked, out=tmp_path / "cell", adopt=staged)
    assert all((staged / name).exists() for name in group_stage.RUN_FILES)
    assert not (tmp_path / "cell" / "samples.jsonl").exists()


def test_a_half_staged_cell_is_not_taken(tmp_path, inputs):
    arguments = _arguments(inputs)
    staged = tmp_path / "staged"
    _stage(staged, arguments, files=("trajectories.jsonl", "cost.json"))  # killed before samples.jsonl
    request = group_stage.run_request(**arguments)
    assert not group_stage.adopt_staged(staged, tmp_path / "cell", group_stage.REQUEST, request, group_stage.RUN_FILES)
    assert not (tmp_path / "cell").exists()


def test_scores_are_taken_only_for_the_very_run_files_they_scored(tmp_path):
    cell, staged = tmp_path / "cell", tmp_path / "staged"
    for directory in (cell, staged):
        directory.mkdir()
        for name in group_stage.RUN_FILES:
            (directory / name).write_text(f"{name}\n")
    for name in group_stage.EVALUATION_FILES:
        (staged / name).write_text(json.dumps({"scored": name}))
    atomic_write_json(staged / group_stage.EVALUATED, group_stage.evaluation_request(staged, "mbppplus", None))
    # another benchmark: not taken (it would need the real evaluator, which has no cost.json to read here)
    with pytest.raises(Exception, match=r"Expecting value"):
        evaluate_cell(cell, "humanevalplus", None, adopt=staged)
    assert (staged / "metrics.json").exists()
    assert evaluate_cell(cell, "mbppplus", None, adopt=staged) == {"scored": "metrics.json"}
    assert json.loads((cell / "results.jsonl").read_text()) == {"scored": "results.jsonl"}


def _fake_stages(monkeypatch, *, shared_run_fails: bool = False) -> list[tuple[str, ...]]:
    """The group's stages faked: epic fails to set up (alone too); what ran how is returned."""
    import promis_repro.stages.evaluate as evaluate_stage
    import promis_repro.stages.run as run_stage
    import promis_repro.strategies.runner as runner

    happened: list[tuple[str, ...]] = []

    def fake_prepare(*, strategy, **_):
        if strategy == "epic":
            raise RuntimeError("epic broke")
        return run_stage.PreparedRun({"strategy": strategy}, None, None, [], None, None, strategy)  # type: ignore[arg-type]

    def fake_together(runs, progress=True):
        happened.append(("together", *runs))
        if shared_run_fails:
            raise RuntimeError("an episode broke")
        return {name: ([], {}) for name in runs}

    def fake_write(prepared, trajectories, suites, out, *, wall):
        assert wall is None  # shared batches: no wall time of its own
        for name in group_stage.RUN_FILES:
            (Path(out) / name).write_text(prepared.arguments["strategy"])

    def fake_run(*, strategy, out, **_):
        happened.append(("alone", strategy))
        if strategy == "epic":
            raise RuntimeError("epic broke")
        for name in group_stage.RUN_FILES:
            (Path(out) / name).write_text(strategy)

    def fake_evaluate(cell, benchmark, data_dir, workers=2, *, name=None, adopt=None):
        assert name == f"cells/{Path(cell).name}"
        for file in group_stage.EVALUATION_FILES:
            (Path(cell) / file).write_text("{}")

    monkeypatch.setattr(run_stage, "prepare_run", fake_prepare)
    monkeypatch.setattr(run_stage, "write_run", fake_write)
    monkeypatch.setattr(run_stage, "run", fake_run)
    monkeypatch.setattr(runner, "run_together", fake_together)
    monkeypatch.setattr(evaluate_stage, "evaluate_cell", fake_evaluate)
    return happened


@pytest.mark.parametrize("shared_run_fails", [False, True])
def test_a_group_stages_every_strategy_and_lists_the_one_that_failed(tmp_path, monkeypatch, shared_run_fails):
    happened = _fake_stages(monkeypatch, shared_run_fails=shared_run_fails)
    out = tmp_path / "group"
    (out / "stale").mkdir(parents=True)
    record = group_stage.run_group(
        strategies=["direct", "epic", "ppo"],
        model="smollm2-135m-instruct",
        rewriter=None,
        benchmark="mbppplus",
        seed=1,
        feedback="visible",
        out=out,
        trained=["ppo=agents/ppo"],
        cell_names=[f"{s}=cells/{s}" for s in ("direct", "epic", "ppo")],
    )
    # the strategies that set up are driven as one run; if that run fails, each runs alone instead
    expected = [("together", "direct", "ppo")]
    if shared_run_fails:
        expected += [("alone", "direct"), ("alone", "ppo")]
    assert happened == expected
    assert record["strategies"]["direct"] == "staged" and record["strategies"]["ppo"] == "staged"
    assert record["strategies"]["epic"] == "failed: epic broke"
    assert json.loads((out / "group.json").read_text())["strategies"] == record["strategies"]
    assert json.loads((out / "ppo" / group_stage.REQUEST).read_text())["trained_dir"] is None  # no training.json
    assert not (out / "epic" / group_stage.REQUEST).exists()


def test_a_malformed_trained_pair_is_one_line(tmp_path):
    from promis_repro.errors import UserError

    with pytest.raises(UserError, match="STRATEGY=PATH"):
        group_stage.run_group(
            strategies=["ppo"],
            model="m",
            rewriter=None,
            benchmark="mbppplus",
            seed=1,
            feedback="visible",
            out=tmp_path,
            trained=["agents/ppo"],
        )


def test_greedy_generations_are_shared_across_seeds_and_sampled_ones_are_not():
    model = {"name": "m"}
    greedy = [DecodingSettings(temperature=0.0, top_p=p, seed=s) for s, p in ((1, 1.0), (2, 0.9))]
    assert cache_key(model, "p", greedy[0]) == cache_key(model, "p", greedy[1])
    sampled = [DecodingSettings(temperature=0.7, seed=s) for s in (1, 2)]
    assert cache_key(model, "p", sampled[0]) != cache_key(model, "p", sampled[1])
    shorter = DecodingSettings(temperature=0.0, max_new_tokens=9)
    assert cache_key(model, "p", greedy[0]) != cache_key(model, "p", shorter)


def test_group_cells_plans_one_group_job_per_model_benchmark_and_seed(tmp_path):
    every = "config/tiny-every-strategy.yaml"
    done = run_snakemake("-n", "-p", "--configfile", every, "--config", f"results={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout + done.stderr)
    assert counts["run_group"] == 4 * 1 and counts["run_cell"] == 4 * 13 * 1  # 4 benchmarks, 13 strategies, 1 seed
    text = done.stdout + done.stderr
    assert "run-group --strategies direct ga_once" in text and "run --adopt" in text and "evaluate-cell --adopt" in text
    # the paper's grid (a GPU cluster) keeps one job per cell
    paper = run_snakemake("-n")
    assert "run_group" not in job_counts(paper.stdout + paper.stderr)
