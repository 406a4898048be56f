"""The grid's vocabulary is defined once (``promis_repro.grid``) and every user agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from promis_repro import grid

REPO = Path(__file__).resolve().parents[1]


def test_registries_name_exactly_the_grid():
    from promis_repro.agent.trained import LOADERS
    from promis_repro.data.registry import LOADERS as BENCHMARK_LOADERS
    from promis_repro.stages.train import TRAINERS
    from promis_repro.strategies.registry import STRATEGIES

    assert tuple(STRATEGIES) == grid.STRATEGIES
    assert tuple(BENCHMARK_LOADERS) == grid.BENCHMARKS
    assert tuple(LOADERS) == tuple(TRAINERS) == grid.AGENTS
    assert all(STRATEGIES[agent].trained for agent in grid.AGENTS)
    assert set(grid.STRATEGY_LABELS) == set(grid.STRATEGIES)


def test_the_schema_takes_its_names_from_the_grid():
    from promis_repro.workflow_config import load_schema

    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    properties = schema["properties"]
    assert properties["strategies"]["items"]["enum"] == list(grid.STRATEGIES)
    assert properties["benchmarks"]["items"]["enum"] == list(grid.BENCHMARKS)
    assert properties["feedback"]["enum"] == list(grid.FEEDBACK_MODES)
    raw = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    assert "ga_only" not in raw and "humanevalplus" not in raw  # not spelled a second time


def test_rules_spell_no_names_or_paths_of_the_grid():
    def code(path: Path) -> str:  # comments may show example paths
        return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))

    rules = {path.name: code(path) for path in (REPO / "rules").glob("*.smk")}
    text = "\n".join(rules.values()) + code(REPO / "Snakefile")
    for name in (*grid.STRATEGIES, *grid.FEEDBACK_MODES, "-oracle"):
        assert not re.search(rf"[\"'/]{re.escape(name)}[\"'/|]", text), name
    assert "seed{{seed}}" not in text and "{{strategy}}{{variant}}" not in text
    assert text.count("wildcard_constraints:") == 1 and "wildcard_constraints:" in rules["common.smk"]


def test_wildcard_patterns_match_every_cell_path_and_nothing_else():
    def matches(template: str, path: str) -> bool:
        pattern = re.escape(template)
        for name, regex in grid.WILDCARD_CONSTRAINTS.items():
            pattern = pattern.replace(re.escape("{" + name + "}"), f"(?:{regex})")
        return re.fullmatch(pattern, path) is not None

    for strategy in grid.STRATEGIES:
        for benchmark in grid.BENCHMARKS:
            for _, variant in grid.feedback_variants("visible", oracle_variant=True):
                path = grid.cell_path("codellama-7b-instruct", benchmark, strategy, 3, variant)
                assert matches(grid.CELL_TEMPLATE, path), path
    assert not matches(grid.CELL_TEMPLATE, "m/mbppplus/best/seed1")
    assert not matches(grid.CELL_TEMPLATE, "m/mbppplus/ppo-leaky/seed1")
    assert not matches(grid.CELL_TEMPLATE, "m/x/mbppplus/ppo/seed1")
    assert matches(grid.AGENT_TEMPLATE, grid.agent_path("rl_rewriter", "m", 2))
    assert matches(grid.AGENT_TEMPLATE, grid.agent_path("self_correct_rl", "m", 2))
    assert matches(grid.CELL_TEMPLATE, "m/mbppplus/self_correct_rl-oracle/seed1")
    assert not matches(grid.AGENT_TEMPLATE, grid.agent_path("direct", "m", 2))


def test_only_generators_it_can_fine_tune_get_self_correct_rl():
    from promis_repro.strategies.registry import STRATEGIES
    from promis_repro.workflow_config import grid_has

    assert tuple(n for n, s in STRATEGIES.items() if s.generator_adapter) == grid.GENERATOR_TRAINING
    assert all(STRATEGIES[name].trained and not STRATEGIES[name].uses_rewriter for name in grid.GENERATOR_TRAINING)
    assert not grid_has("self_correct_rl", "codet5p-770m-py")  # seq2seq: TRL trains causal LMs
    assert grid_has("self_correct_rl", "codellama-7b-instruct") and grid_has("self_correct_rl", "smollm2-135m-instruct")
    assert all(grid_has(strategy, "codet5p-770m-py") for strategy in grid.STRATEGIES if strategy != "self_correct_rl")


def test_find_metrics_reads_the_cell_template(tmp_path):
    from promis_repro.analysis.tree import find_metrics

    cells = [
        grid.cell_dir(tmp_path, "m", "mbppplus", "ppo", 1),
        grid.cell_dir(tmp_path, "m", "apps", "direct", 2, grid.variant_of("oracle")),
    ]
    others = [tmp_path / grid.agent_path("ppo", "m", 1), tmp_path / "aggregate" / "x" / "y" / "seed1"]
    for directory in cells + others:
        directory.mkdir(parents=True)
        (directory / "metrics.json").write_text("{}")
    assert find_metrics(tmp_path) == sorted(d / "metrics.json" for d in cells)


def test_the_configs_use_only_grid_names():
    for path in (REPO / "config").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        if "strategies" not in config:
            continue
        assert set(config["strategies"]) <= set(grid.STRATEGIES), path
        assert set(config["benchmarks"]) <= set(grid.BENCHMARKS), path
