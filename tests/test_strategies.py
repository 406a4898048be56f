"""Actions, feedback protocol, budgets and strategies (fast: scripted models; see test_strategies_model.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from strategy_fakes import FakeModels

from promis_repro.agent.trained import load_trained
from promis_repro.data.registry import load_benchmark
from promis_repro.data.task import AssertTests
from promis_repro.errors import UserError
from promis_repro.generation.prompts import build_prompt
from promis_repro.generation.registry import get_model
from promis_repro.rewards import RewardConfig, step_reward
from promis_repro.settings import from_mapping
from promis_repro.strategies import feedback as feedback_module
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.engine import Barrier, Budget, BudgetExceeded, Generate, Ledger, drive
from promis_repro.strategies.epic import make_barrier_resolver, roulette
from promis_repro.strategies.lpo import optimize_instruction, parse_instruction
from promis_repro.strategies.mutation import LexicalMutator, task_identifiers
from promis_repro.strategies.prompt_parts import editable_parts
from promis_repro.strategies.registry import STRATEGIES, Strategy
from promis_repro.strategies.rewrite import FALLBACK, parse_rewrite, validate_rewrite
from promis_repro.strategies.runner import run_strategy, run_together, start_strategy

ITERATIVE = ("ga_only", "rewrite_only", "random_hybrid", "epic", "reflexion", "self_correct")


@pytest.fixture(scope="module")
def mutator() -> LexicalMutator:
    return LexicalMutator(probability=1.0, threshold=0.0)


# -- prompt parts --------------------------------------------------------------------------------


@pytest.mark.parametrize("benchmark", ["mbpp", "mbppplus", "humaneval", "humanevalplus", "apps"])
def test_editable_parts_round_trip(data_dir, benchmark):
    for task in load_benchmark(benchmark, data_dir):
        parts = editable_parts(task)
        original = task.description if benchmark.startswith("mbpp") else task.prompt
        assert parts.compose(parts.text) == original, task.task_id
        assert parts.text.strip(), task.task_id
        if benchmark.startswith("human"):
            assert ">>>" not in parts.text and f"def {task.entry_point}" not in parts.text


# -- action 1: mutation --------------------------------------------------------------------------


def _sample_tasks(data_dir):
    tasks = []
    for benchmark in ("mbppplus", "humanevalplus", "apps"):
        tasks.extend(load_benchmark(benchmark, data_dir)[:12])
    return tasks


def test_mutation_keeps_identifiers_code_and_asserts(data_dir, mutator):
    spec = get_model("smollm2-135m-instruct")
    changed = 0
    for task in _sample_tasks(data_dir):
        parts = editable_parts(task)
        result = mutator.mutate(parts.text, task, np.random.default_rng(1))
        changed += result.changed
        mutated_prompt = parts.compose(result.text)
        # every identifier (as a whole word), backticked or quoted span of the description survives
        for name in task_identifiers(task):
            word = re.compile(rf"\b{re.escape(name)}\b")
            assert len(word.findall(result.text)) == len(word.findall(parts.text)), (task.task_id, name)
        for span in re.findall(r"`[^`\n]*`|\"[^\"\n]*\"|\$[^$\n]*\$", parts.text):
            assert span in result.text, (task.task_id, span)
        # the signature, examples and shown asserts are outside the editable text
        assert mutated_prompt.startswith(parts.head) and mutated_prompt.endswith(parts.tail)
        if isinstance(task.visible_tests, AssertTests) and task.benchmark == "mbppplus":
            message = build_prompt(task, spec, mutated_prompt).messages[-1][1]
            assert all(a in message for a in task.visible_tests.asserts)
        for before, after in (pair for variant in result.replacements for pair in variant):
            assert before.lower() not in {n.lower() for n in task_identifiers(task)}
            assert after.isalpha()
    assert changed >= 30  # with p = 1 nearly every description changes


def test_mutation_is_reproducible_by_seed(data_dir):
    task = load_benchmark("humanevalplus", data_dir)[1]
    text = editable_parts(task).text
    mutator = LexicalMutator(threshold=0.0)
    first = mutator.mutate(text, task, np.random.default_rng(7))
    again = mutator.mutate(text, task, np.random.default_rng(7))
    assert first.text == again.text and first.replacements == again.replacements
    others = {mutator.mutate(text, task, np.random.default_rng(seed)).text for seed in range(8)}
    assert len(others) > 1


def test_mutation_similarity_filter(data_dir):
    task = load_benchmark("mbppplus", data_dir)[5]
    text = editable_parts(task).text
    strict = LexicalMutator(probability=1.0, threshold=0.9999).mutate(text, task, np.random.default_rng(0))
    assert not strict.changed and strict.text == text  # no variant is similar enough: keep the original
    assert any(v != text for v in strict.variants)


def test_mutation_protects_identifiers_inside_prose(data_dir, mutator):
    task = load_benchmark("mbpp", data_dir)[0]
    text = "Write a function find_max_value that takes `items` and a number n and returns the largest value."
    spots = {word for _, _, word, _ in mutator.eligible(text, task_identifiers(task) | {"n"})}
    assert "find_max_value" not in spots and "items" not in spots and "n" not in spots
    assert {"takes", "number", "largest"} & spots


# -- action 2: rewrite contract ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("Here is the rewritten prompt: Write a Python function add_two that returns the sum of its inputs.", "ok"),
        (
            'Sure!\nHere is the rewritten prompt:\n\n"Write add_two, which adds two integers and returns the sum."'
            "\n\nHope it helps",
            "ok",
        ),
        ("Write a Python function add_two that returns the sum.", "missing prefix"),
        (
            "Here is the rewritten prompt: Write a function that adds two numbers together.",
            "does not name the function add_two",
        ),
        (
            "Here is the rewritten prompt: Write add_two:\n```python\ndef add_two(a, b):\n    return a + b\n```",
            "contains code",
        ),
        (
            "Here is the rewritten prompt: add_two sums.\nHere is the rewritten prompt: add_two adds values.",
            "more than one rewritten prompt",
        ),
        ("Here is the rewritten prompt: Write add_two so that\ndef add_two(a, b): return a+b", "contains code"),
        ("Here is the rewritten prompt:", "empty description"),
        (
            "Here is the rewritten prompt:\n1. Write add_two adding numbers.\n\n2. Write add_two summing values.",
            "several alternative descriptions",
        ),
    ],
)
def test_rewrite_validator(output, reason):
    """Accepts one description that names the function and holds no code; rejects everything else."""
    description, why = validate_rewrite(output, "add_two")
    assert why == reason
    assert (description is not None) == (reason == "ok")


def test_rewrite_fallback_is_documented_and_never_nested():
    result = parse_rewrite("no prefix here", "add_two", "Add two numbers.")
    assert not result.valid and result.text == FALLBACK.format(function="add_two", description="Add two numbers.")
    again = parse_rewrite("still nothing", "add_two", result.text)
    assert again.text == result.text
    assert parse_rewrite("nothing", None, "Read n and print n.").text == "Read n and print n."


# -- feedback protocol ---------------------------------------------------------------------------

ADD = "def add(a, b):\n    return a + b"


def test_hidden_tests_never_reach_a_visible_run(data_dir, monkeypatch, tmp_path):
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    _lpo_run(data_dir, tmp_path / "lpo")  # lpo's trained instruction (ppo: tests/test_agent.py)
    trained = {"lpo": load_trained("lpo", tmp_path / "lpo")}
    seen = []
    original = feedback_module.evaluate_program

    def spy(task, code, tests=None, **kw):
        seen.append(tests)
        return original(task, code, tests, **kw)

    monkeypatch.setattr(feedback_module, "evaluate_program", spy)
    hidden = [t.hidden_tests for t in tasks]
    for strategy in ("direct", "ga_only", "rewrite_only", "random_hybrid", "epic", "reflexion", "self_correct", "lpo"):
        models = FakeModels([ADD, "def f():\n    return 1"])
        config = StrategyConfig(max_generator_calls=3, max_steps=3)
        _, suites = run_strategy(
            strategy,
            tasks,
            models,
            seed=0,
            feedback="visible",
            config=config,
            trained=trained.get(strategy),
            progress=False,
        )
        assert seen and all(tests is not None for tests in seen)
        assert not any(tests is h for tests in seen for h in hidden), strategy
        assert all(s.tests is t.visible_tests for s, t in zip(suites.values(), tasks, strict=True))
        # not even the suite's private task leads to the hidden tests
        assert all(s._task.hidden_tests is None and s._task.reference_solution is None for s in suites.values())
        # the prompts the models saw never contain a hidden-only input
        plus_inputs = [repr(tuple(t.hidden_tests.groups["plus"][0])) for t in tasks]
        assert not any(inp in text for _, text in models.calls for inp in plus_inputs)
        seen.clear()
    # positive control: under oracle the hidden suite is used, and the run says it is leaky
    run_strategy("direct", tasks, FakeModels([ADD]), seed=0, feedback="oracle", config=StrategyConfig(), progress=False)
    assert any(tests is h for tests in seen for h in hidden)


def test_strategies_driven_together_give_what_each_gives_alone_in_fewer_batches(data_dir):
    """A group job drives its strategies as one run: same trajectories, shared batches, own barriers."""
    tasks = load_benchmark("mbppplus", data_dir)[:3]
    names = ("direct", "ga_once", "rewrite_once", *ITERATIVE)
    # EPiC stops on a dataset-level gain: a threshold only its own 3 tasks can cross decides its barriers
    config = StrategyConfig(max_generator_calls=3, max_rewriter_calls=3, max_steps=3, epic_min_gain=0.2)
    programs = [ADD, "def f():\n    return 1", "def add(a, b):\n    return a - b"]

    def start(name, models):
        return start_strategy(name, tasks, models, seed=7, feedback="visible", config=config)

    def view(trajectories):
        return [(t.final_code, t.final_step, t.steps, t.ledger.as_dict(), t.info) for t in trajectories]

    alone, batches_alone = {}, 0
    for name in names:
        models = FakeModels(programs)
        alone[name] = view(run_together({name: start(name, models)}, progress=False)[name][0])
        batches_alone += models.batches
    shared = FakeModels(programs)
    together = run_together({name: start(name, shared) for name in names}, progress=False)
    assert {name: view(trajectories) for name, (trajectories, _) in together.items()} == alone
    # greedy calls, and sampled calls at the same call index, share a batch across strategies
    assert shared.batches < 0.75 * batches_alone


def test_strategies_sharing_a_batch_dependent_model_keep_their_own_batches(data_dir):
    """On a GPU, vLLM or CodeT5+'s padded batches a text depends on its batch mates: strategies driven
    together there batch as each would alone."""
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    names, config = ("direct", "ga_only", "rewrite_only"), StrategyConfig(max_generator_calls=2, max_rewriter_calls=2)

    def dependent() -> FakeModels:
        models = FakeModels([ADD])
        for side in (models.generator, models.rewriter):
            side.batch_independent = False
        return models

    alone = 0
    for name in names:
        models = dependent()
        run_together({name: start_strategy(name, tasks, models, seed=1, feedback="visible", config=config)})
        alone += models.batches
    shared = dependent()
    run_together({n: start_strategy(n, tasks, shared, seed=1, feedback="visible", config=config) for n in names})
    assert shared.batches == alone


def test_strategies_see_a_public_view(data_dir):
    tasks = load_benchmark("humanevalplus", data_dir)[:1]
    seen = {}

    def probe(ctx):
        seen["task"] = ctx.task
        candidate = yield from ctx.code(ctx.parts.text)
        ctx.log(0, candidate)
        return ctx.finish(candidate)

    STRATEGIES["_probe"] = Strategy("_probe", lambda _trained: probe, "a probe of what a strategy sees")
    try:
        run_strategy(
            "_probe", tasks, FakeModels([ADD]), seed=0, feedback="visible", config=StrategyConfig(), progress=False
        )
    finally:
        del STRATEGIES["_probe"]
    assert seen["task"].hidden_tests is None and seen["task"].reference_solution is None


def test_selfgen_builds_tests_from_the_generator(data_dir):
    task = replace(load_benchmark("mbppplus", data_dir)[0], entry_point="add")
    trajectories, suites = run_strategy(
        "reflexion", [task], FakeModels([ADD]), seed=0, feedback="selfgen", config=StrategyConfig(), progress=False
    )
    suite = suites[task.task_id]
    assert suite.tests.asserts == ["assert add(1, 2) == 3"]  # Reflexion writes one internal test
    _, suites = run_strategy(
        "ga_only", [task], FakeModels([ADD]), seed=0, feedback="selfgen", config=StrategyConfig(), progress=False
    )
    assert suites[task.task_id].tests.asserts == ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    assert trajectories[0].steps[0]["feedback"]["passed"] is True
    assert trajectories[0].ledger.as_dict()["calls"]["generator:tests"] == 1


def test_parse_generated_tests():
    lines = [
        "assert f(1) == 2",
        "assert f(1) == 2",
        "assert g(1) == 2",
        "assert f(2 == 3",
        "print(f(3))",
        "assert f(3) == 4",
    ]
    text = "```python\n" + "\n".join(lines) + "\n```"
    assert feedback_module.parse_generated_asserts(text, "f", 5) == ["assert f(1) == 2", "assert f(3) == 4"]
    io = "<input>\n3\n</input>\n<output>\n6\n</output>\n<input>1</input><output></output>"
    assert feedback_module.parse_generated_io(io, 5) == [("3\n", "6\n")]


def test_unknown_names_fail_with_one_line(data_dir):
    tasks = load_benchmark("mbppplus", data_dir)[:1]
    with pytest.raises(UserError, match="unknown strategy 'nope'"):
        run_strategy("nope", tasks, FakeModels([ADD]), seed=0, feedback="visible", config=StrategyConfig())
    with pytest.raises(UserError, match="unknown feedback mode 'hidden'"):
        run_strategy("direct", tasks, FakeModels([ADD]), seed=0, feedback="hidden", config=StrategyConfig())
    with pytest.raises(UserError, match="needs a rewriter"):
        run_strategy(
            "epic", tasks, FakeModels([ADD], rewriter=False), seed=0, feedback="visible", config=StrategyConfig()
        )
    with pytest.raises(UserError, match="unknown key 'budgett'"):
        from_mapping(StrategyConfig, {"budgett": 3}, "strategy config")
    with pytest.raises(UserError, match="max_new_tokens must be int"):
        from_mapping(StrategyConfig, {"max_new_tokens": "many"}, "strategy config")


# -- budgets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ITERATIVE)
@pytest.mark.parametrize("budget", [1, 3])
def test_budgets_cap_every_strategy(data_dir, strategy, budget):
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    config = StrategyConfig(
        max_generator_calls=budget,
        max_rewriter_calls=budget,
        self_correct_turns=5,
        reflexion_max_iters=5,
        epic_generations=10,
    )
    trajectories, _ = run_strategy(
        strategy,
        tasks,
        FakeModels(["def f():\n    return 0"]),
        seed=0,
        feedback="visible",
        config=config,
        progress=False,
    )
    for trajectory in trajectories:
        ledger = trajectory.ledger
        assert 1 <= ledger.count("generator") <= budget
        assert ledger.count("rewriter") <= budget
        assert trajectory.final_code


def test_driver_refuses_a_call_over_budget():
    from promis_repro.generation.base import ChatPrompt, DecodingSettings

    def greedy():
        while True:
            yield Generate("generator", ChatPrompt(text="x"), DecodingSettings(), "code")

    models = FakeModels(["pass"])
    with pytest.raises(BudgetExceeded):
        drive({"t": greedy()}, models.call, {"t": Ledger()}, Budget(2, 2))


def test_rewrite_validator_edge_cases():
    numbered = "Here is the rewritten prompt:\n1. Write add_two adding numbers.\n2. Write add_two summing values."
    assert validate_rewrite(numbered, "add_two")[1] == "several alternative descriptions"
    assert validate_rewrite("Here is the rewritten prompt: Parse the address string fully.", "add")[1].startswith(
        "does not name"
    )
    assert validate_rewrite("Here is the rewritten prompt: Call add(a, b) to sum two numbers.", "add")[1] == "ok"


def test_driver_allows_one_test_writing_call():
    from promis_repro.generation.base import ChatPrompt, DecodingSettings

    def twice():
        yield Generate("generator", ChatPrompt(text="t1"), DecodingSettings(), "tests")
        yield Generate("generator", ChatPrompt(text="t2"), DecodingSettings(), "tests")

    with pytest.raises(BudgetExceeded, match="one test-writing call"):
        drive({"t": twice()}, FakeModels(["pass"]).call, {"t": Ledger()}, Budget(5, 5))


def test_driver_batches_across_tasks_and_resolves_barriers():
    from promis_repro.generation.base import ChatPrompt, DecodingSettings

    batches = []

    def call(role, prompts, settings):
        batches.append(len(prompts))
        return FakeModels(["pass"]).call(role, prompts, settings)

    def episode(i):
        yield Generate("generator", ChatPrompt(text=f"p{i}"), DecodingSettings(), "code")
        reply = yield Barrier("sync", {"solved": i == 0})
        return reply

    results = drive(
        {i: episode(i) for i in range(4)},
        call,
        {i: Ledger() for i in range(4)},
        Budget(),
        resolve_barrier=make_barrier_resolver(4, 0.015),
    )
    assert batches == [4]
    assert results[1] == {"continue": True, "gain": 0.25}


def test_epic_roulette_and_early_stop():
    from promis_repro.strategies.actions import Candidate
    from promis_repro.strategies.feedback import Feedback

    def cand(f, i):
        return Candidate("t", "c", Feedback(f == 1, f, 4, int(4 * f), "fail", ""), "", i)

    rng = np.random.default_rng(0)
    picks = [roulette([cand(0.0, 0), cand(0.0, 1)], rng).step for _ in range(200)]
    assert 60 < sum(picks) < 140  # uniform when every fitness is zero
    picks = [roulette([cand(0.0, 0), cand(0.5, 1)], rng).step for _ in range(50)]
    assert set(picks) == {1}
    resolve = make_barrier_resolver(100, 0.015)
    assert resolve("x", {1: {"solved": True}})[1]["continue"] is False  # 1% gain <= 1.5%
    assert resolve("x", {i: {"solved": True} for i in range(2)})[0]["continue"] is True


def test_epic_breeds_survivor_and_mutants_until_the_budget(data_dir):
    # every program fails, so no generation is accepted: the run goes original -> 4 rewrites ->
    # survivor + 4 mutants -> a third generation cut by the budget (10 generator calls)
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    config = StrategyConfig(max_generator_calls=10, epic_min_gain=-1.0)  # never stop early on gain
    trajectories, _ = run_strategy(
        "epic", tasks, FakeModels(["def f():\n    return 0"]), seed=4, feedback="visible", config=config, progress=False
    )
    for trajectory in trajectories:
        steps = trajectory.steps
        by_generation = [(s["epic_generation"], s["action"]) for s in steps]
        assert by_generation == [(0, 0)] + [(1, 2)] * 4 + [(2, 1)] * 4 + [(3, 1)]
        generation_1 = {0, 1, 2, 3, 4}
        generation_2 = {steps[5]["survivor_step"], 5, 6, 7, 8}
        for step in steps[5:9]:
            assert step["parent_step"] in generation_1 and step["survivor_step"] in generation_1
        assert steps[9]["parent_step"] in generation_2 and steps[9]["survivor_step"] in generation_2
        assert trajectory.info == {"accepted": None, "generations": 3, "budget_exhausted": True, "stop": "budget spent"}
        assert steps[-1]["generator_calls"] == 10


# -- rewards and trajectories --------------------------------------------------------------------


def test_reward_formulas():
    binary = RewardConfig(kind="binary")
    assert step_reward(binary, True, 1.0, 0.0) == 1.0 and step_reward(binary, False, 0.9, 0.0) == -0.1
    shaped = RewardConfig(kind="shaped", w_pass=1.0, w_soft=0.5, w_step=0.05)
    assert step_reward(shaped, False, 0.5, 0.25) == pytest.approx(0.5 * 0.25 - 0.05)
    assert step_reward(shaped, True, 1.0, 0.5) == pytest.approx(1 + 0.25 - 0.05)
    assert "0.5*(soft_t - soft_(t-1))" in shaped.formula()
    with pytest.raises(UserError, match="unknown reward"):
        RewardConfig(kind="dense")


def test_trajectory_rows_carry_action_prompt_code_feedback_reward(data_dir):
    tasks = load_benchmark("mbppplus", data_dir)[:1]
    trajectories, _ = run_strategy(
        "random_hybrid",
        tasks,
        FakeModels(["def f():\n    return 0"]),
        seed=3,
        feedback="visible",
        config=StrategyConfig(max_steps=5),
        progress=False,
    )
    steps = trajectories[0].steps
    assert 1 <= len(steps) <= 5
    for step in steps:
        assert step["action"] in (0, 1, 2) and {"prompt", "code", "feedback", "reward"} <= set(step)
    again, _ = run_strategy(
        "random_hybrid",
        tasks,
        FakeModels(["def f():\n    return 0"]),
        seed=3,
        feedback="visible",
        config=StrategyConfig(max_steps=5),
        progress=False,
    )
    assert [s["action"] for s in again[0].steps] == [s["action"] for s in steps]


@pytest.mark.parametrize("compose", [True, False])
def test_compose_decides_what_each_action_edits(data_dir, compose):
    # compose (default): an action edits the current prompt; off: always the original (the public code)
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    models = FakeModels(["def f():\n    return 0"])  # always fails: no early stop
    config = StrategyConfig(max_steps=10, compose=compose)
    trajectories, _ = run_strategy(
        "random_hybrid", tasks, models, seed=1, feedback="visible", config=config, progress=False
    )
    requests = [text for role, text in models.calls if role == "rewriter"]
    assert len(requests) >= 4
    originals = [editable_parts(t).text for t in tasks]
    descriptions = [r.split("Task description:", 1)[1].split("Latest test feedback", 1)[0] for r in requests]
    fake_rewrite = "Write a Python function"  # what FakeModels' rewriter answers
    edits_a_rewrite = [fake_rewrite in d for d in descriptions]
    if compose:
        assert any(edits_a_rewrite)  # a later rewrite edits an earlier one
    else:
        assert not any(edits_a_rewrite) and all(any(o.strip() in d for o in originals) for d in descriptions)
    for trajectory in trajectories:
        for step in trajectory.steps:
            if step["action"] == 0 and not compose:
                assert step["prompt"] in originals


# -- lpo -----------------------------------------------------------------------------------------


def _lpo_run(data_dir, out, stop_after=None):
    from promis_repro.data.pools import load_pool
    from promis_repro.strategies.actions import Tools

    train = load_pool("train_pool", data_dir)[:6]
    selection = load_pool("selection_pool", data_dir)[:2]
    models = FakeModels(["def f():\n    return 0"])
    config = StrategyConfig(lpo={"batch_size": 2, "eval_every": 1})
    tools = Tools(models.generator.spec, models.rewriter.spec, config, RewardConfig(), seed=5)
    return optimize_instruction(tools, models.call, train, selection, out, settings=config.lpo, stop_after=stop_after)


def test_lpo_resumes_from_its_checkpoint(data_dir, tmp_path):
    whole = _lpo_run(data_dir, tmp_path / "whole")
    assert whole["complete"] and len(whole["history"]) == 3 and len(whole["evaluations"]) == 4
    partial = _lpo_run(data_dir, tmp_path / "split", stop_after=1)
    assert not partial["complete"] and partial["next_batch"] == 1
    saved = json.loads((tmp_path / "split" / "lpo_state.json").read_text())
    assert saved["next_batch"] == 1
    resumed = _lpo_run(data_dir, tmp_path / "split")
    assert resumed["complete"]
    for key in ("history", "evaluations", "instruction", "best_instruction", "best_score"):
        assert json.dumps(resumed[key], default=str) == json.dumps(whole[key], default=str), key


def test_lpo_instruction_parser():
    assert (
        parse_instruction("Here is the improved instruction: Handle empty inputs first.")
        == "Handle empty inputs first."
    )
    assert parse_instruction("Handle empty inputs.") is None
    assert parse_instruction("Here is the improved instruction:\n```python\nx\n```") is None
