"""The like-for-like protocol: the MBPP test split, the leakage guard and audit, equal budgets, budget curves,
training under test-time conditions, and the paper's protocol as a labelled ablation."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from strategy_fakes import FakeModels

from promis_repro.agent import env as env_module
from promis_repro.agent.env import PromptEnv
from promis_repro.agent.ppo import PPOConfig, new_ppo_model, train_ppo
from promis_repro.analysis.budget import curve_rows
from promis_repro.data.leakage import TrainingSide
from promis_repro.data.pools import load_pool
from promis_repro.data.registry import evaluation_tasks, load_benchmark
from promis_repro.errors import UserError
from promis_repro.io import atomic_write_jsonl
from promis_repro.rewards import RewardConfig
from promis_repro.strategies import policy as policy_module
from promis_repro.strategies.actions import BUDGET, OWN_END, PASSED, SINGLE, Tools
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.feedback import FeedbackSuite, held_out_tests
from promis_repro.strategies.runner import run_strategy

REPO = Path(__file__).resolve().parents[1]
NEVER = "def f():\n    return 0"  # passes no test: every step runs, every failure is reported


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promis_repro.cli", *args], capture_output=True, text=True, timeout=900
    )


# -- 1. the MBPP test split and the guard --------------------------------------------------------


def test_mbpp_is_evaluated_on_its_original_test_split_only(data_dir):
    tasks = evaluation_tasks("mbpp", data_dir)
    assert len(tasks) == 500 and {int(t.task_id) for t in tasks} == set(range(11, 511))
    for task in tasks:  # the original asserts are the hidden tests, the first of them the visible one
        assert task.visible_tests.asserts == task.hidden_tests.asserts[:1] and len(task.hidden_tests.asserts) >= 3
    assert len(load_benchmark("mbpp", data_dir)) == 974  # the pools still read every split


def test_pools_are_decontaminated_against_the_mbpp_test_split(data_dir):
    side = TrainingSide.load(None, data_dir)
    assert set(side.benchmarks) >= {"mbpp", "mbppplus", "humanevalplus", "apps"}
    assert all(int(t.task_id) >= 511 for t in side.tasks)  # validation and train splits only
    # nothing any paper benchmark evaluates matches the training side, by id, text or embedding
    for benchmark in ("mbpp", "mbppplus"):
        assert side.matches(evaluation_tasks(benchmark, data_dir), embeddings=True) == []


def test_the_guard_names_a_training_task_in_one_line(data_dir):
    side = TrainingSide.load(None, data_dir)
    pool_ids = {t.task_id for t in side.tasks}
    sanitized = next(t for t in load_benchmark("mbpp_sanitized", data_dir) if t.task_id in pool_ids)
    with pytest.raises(UserError, match=rf"task mbpp_sanitized/{sanitized.task_id} matches MBPP task"):
        side.check("mbpp_sanitized", [sanitized])
    pool_task = side.tasks[0]
    # a benchmark the pools were not decontaminated against is checked by embedding too
    twin = replace(load_benchmark("humaneval", data_dir)[0], description=pool_task.text, prompt=pool_task.text)
    with pytest.raises(UserError, match="by text"):
        side.check("humaneval", [twin])


def test_a_trained_strategy_on_a_training_task_fails_before_anything_runs(data_dir, tmp_path):
    import shutil

    # pools that hold an evaluated task (MBPP test task 12, e.g. from an edited or foreign pool file)
    pools = tmp_path / "pools"
    shutil.copytree(TrainingSide.load(None, data_dir).directory, pools)
    with open(pools / "train_pool.jsonl", "a") as handle:
        handle.write(json.dumps({"task_id": "12", "split": "test"}) + "\n")
    done = _cli("run", "--strategy", "ppo", "--model", "smollm2-135m-instruct", "--rewriter", "smollm2-135m-instruct",
                "--benchmark", "mbpp", "--limit", "3", "--pools", str(pools), "--out", str(tmp_path / "cell"),
                "--data-dir", str(data_dir))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "task mbpp/12 matches MBPP task 12 of the train pool by id" in lines[0], lines
    assert not (tmp_path / "cell").exists()
    # MBPP sanitized keeps MBPP's splits: only its test-split tasks are evaluated, so none is a training task
    assert all(int(t.task_id) <= 510 for t in evaluation_tasks("mbpp_sanitized", data_dir))


def test_training_json_lists_the_training_side_and_the_audit_counts_matches(data_dir, tmp_path):
    from synthetic_results import write_cell

    from promis_repro.analysis.aggregate import aggregate
    from promis_repro.analysis.leakage_audit import audit_frame
    from promis_repro.analysis.tree import find_metrics

    train = [t.task_id for t in load_pool("train_pool", data_dir)[:5]]
    agent = tmp_path / "agents" / "ppo" / "m" / "seed1"
    agent.mkdir(parents=True)
    (agent / "training.json").write_text(json.dumps({"train_ids": train, "selection_ids": ["511"]}))
    evaluated = [t.task_id for t in evaluation_tasks("mbpp", data_dir)[:3]]
    write_cell(tmp_path, "m", "mbpp", "ppo", 1, [(task_id, True, 1.0) for task_id in evaluated])
    aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    frame, _ = audit_frame(tmp_path, data_dir)
    assert frame[["id_matches", "text_matches", "embedding_matches"]].to_numpy().sum() == 0
    # a planted leak: the agent trained on an evaluated task
    (agent / "training.json").write_text(json.dumps({"train_ids": [*train, evaluated[0]], "selection_ids": []}))
    frame, _ = audit_frame(tmp_path, data_dir)
    assert int(frame["id_matches"].sum()) == 1 and int(frame["text_matches"].sum()) == 1


# -- 2. equal budgets ----------------------------------------------------------------------------


def test_every_strategy_may_use_the_same_budget_and_says_why_it_stopped(data_dir):
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    config = StrategyConfig(max_generator_calls=5, max_rewriter_calls=5, max_steps=5)
    for strategy in ("ga_only", "rewrite_only", "random_hybrid", "reflexion", "self_correct"):
        trajectories, _ = run_strategy(
            strategy, tasks, FakeModels([NEVER]), seed=0, feedback="visible", config=config, progress=False
        )
        for trajectory in trajectories:  # Reflexion runs up to B iterations; self-correction up to B turns
            assert trajectory.ledger.count("generator") == 5, strategy
            assert trajectory.info["stop"] == BUDGET, strategy
            assert [s["budget_calls"] for s in trajectory.steps] == sorted(s["budget_calls"] for s in trajectory.steps)
    # a strategy's own protocol still exists when asked for (SCoRe's 2 turns), and says so
    trajectories, _ = run_strategy("self_correct", tasks, FakeModels([NEVER]), seed=0, feedback="visible",
                                   config=replace(config, self_correct_turns=2), progress=False)  # fmt: skip
    assert all(t.ledger.count("generator") == 2 and t.info["stop"] == OWN_END for t in trajectories)
    # a pass of the visible test ends an episode early
    solution = tasks[0].reference_solution
    trajectories, _ = run_strategy("ga_only", tasks[:1], FakeModels([solution]), seed=0, feedback="visible",
                                   config=config, progress=False)  # fmt: skip
    assert trajectories[0].ledger.count("generator") == 1 and trajectories[0].info["stop"] == PASSED


def test_the_papers_single_application_rows(data_dir):
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    for strategy, action, rewriter_calls in (("ga_once", 1, 0), ("rewrite_once", 2, 1), ("direct", 0, 0)):
        trajectories, _ = run_strategy(
            strategy, tasks, FakeModels([NEVER]), seed=0, feedback="visible", config=StrategyConfig(), progress=False
        )
        for trajectory in trajectories:
            assert [s["action"] for s in trajectory.steps] == [action], strategy
            assert trajectory.ledger.count("generator") == 1 and trajectory.ledger.count("rewriter") == rewriter_calls
            assert trajectory.info["stop"] == SINGLE


def test_the_budget_curve_is_the_best_so_far_by_visible_feedback(tmp_path):
    rows = [
        {"task_id": "a", "step": 0, "budget_calls": 1, "feedback_soft": 0.0, "passed": False, "soft_pass": 0.2},
        {"task_id": "a", "step": 1, "budget_calls": 3, "feedback_soft": 1.0, "passed": True, "soft_pass": 1.0},
        # a later tie by visible feedback: the earliest stays, even though the hidden tests like this one less
        {"task_id": "a", "step": 2, "budget_calls": 4, "feedback_soft": 1.0, "passed": False, "soft_pass": 0.5},
        # better on the hidden tests but worse on the visible ones: never chosen over step 1's
        {"task_id": "b", "step": 0, "budget_calls": 2, "feedback_soft": 0.5, "passed": False, "soft_pass": 0.4},
        {"task_id": "b", "step": 1, "budget_calls": 4, "feedback_soft": 0.0, "passed": True, "soft_pass": 1.0},
    ]
    path = tmp_path / "candidates.jsonl"
    atomic_write_jsonl(path, rows)
    curve, at_budget = curve_rows({"strategy": "x", "seed": 1}, path, ["a", "b", "c"], 4)
    assert [round(r["pass_at_1"], 4) for r in curve] == [0.0, 0.0, round(1 / 3, 4), round(1 / 3, 4)]
    assert [round(r["soft_pass_at_1"], 4) for r in curve] == [round(x / 3, 4) for x in (0.2, 0.6, 1.4, 1.4)]
    assert [(r["task_id"], r["passed"]) for r in at_budget] == [("a", 1.0), ("b", 0.0), ("c", 0.0)]


# -- 3. training under test-time conditions ------------------------------------------------------


@pytest.mark.parametrize("mode", ["visible", "all"])
def test_training_with_visible_feedback_never_shows_a_held_out_test(data_dir, tmp_path, monkeypatch, mode):
    train = load_pool("train_pool", data_dir)[:4]
    selection = load_pool("selection_pool", data_dir)[:2]
    held_out = {a for task in train + selection for a in held_out_tests(task).asserts}
    seen: list[str] = []  # what reached the policy: the feedback and prompt of every observation
    evaluated: list[FeedbackSuite] = []  # every suite the harness ran code on

    def spy_observe(ctx, text, step, last_feedback, **options):
        seen.extend([last_feedback, ctx.parts.compose(text)])
        return observe(ctx, text, step, last_feedback, **options)

    def spy_evaluate(suite, code):
        evaluated.append(suite)
        return evaluate(suite, code)

    observe, evaluate = policy_module.observe, FeedbackSuite.evaluate
    monkeypatch.setattr(env_module, "observe", spy_observe)
    monkeypatch.setattr(policy_module, "observe", spy_observe)
    monkeypatch.setattr(FeedbackSuite, "evaluate", spy_evaluate)
    models = FakeModels([NEVER])
    tools = Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(max_steps=3), RewardConfig(), seed=5)
    config = PPOConfig(total_timesteps=16, n_steps=8, batch_size=8, eval_every=8, no_visible_fraction=0.25)
    train_ppo(tools, models.call, train, selection, tmp_path, config, train_feedback=mode)
    reached = [text for _, text in models.calls] + seen
    leaked = {test for test in held_out if any(test in text for text in reached)}
    scored_held_out = any(s.tests is not None and set(s.tests.asserts) & held_out for s in evaluated)
    assert scored_held_out  # the reward (and selection) did run the held-out tests
    if mode == "visible":
        assert not leaked, sorted(leaked)[:3]
    else:  # the instrument sees a leak where there is one: the paper's protocol shows every test
        assert leaked


def test_some_training_episodes_come_without_a_visible_test(data_dir):
    tasks = load_pool("train_pool", data_dir)[:3]
    models = FakeModels([NEVER])
    tools = Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(max_steps=2), RewardConfig(), seed=0)
    env = PromptEnv(tasks, tools, models.call, no_visible_fraction=1.0)
    observation, _ = env.reset(options={"task_index": 0})
    assert env.ctx.suite.n_tests == 0 and observation[4] == 0.0  # the task feature: no visible tests
    env.step(0)
    assert "Your code should pass this test" not in models.calls[-1][1]
    assert tasks[0].visible_tests.asserts[0] not in models.calls[-1][1]
    env = PromptEnv(tasks, tools, models.call, no_visible_fraction=0.0)
    observation, _ = env.reset(options={"task_index": 0})
    assert env.ctx.suite.n_tests == 1 and observation[4] == 1.0


def test_selection_scores_on_hidden_tests_with_visible_feedback(data_dir):
    from promis_repro.agent.ppo import evaluate_policy
    from promis_repro.strategies.policy import TrainedPolicy

    class Direct:  # always action 0
        def predict(self, observation, deterministic=True):
            return np.array(0), None

    def expected(test: str) -> str:
        return test.split("==", 1)[1].strip() if "==" in test else ""

    # a task whose asserts expect different literals: a program returning the visible one's passes it alone
    task = next(
        t
        for t in load_pool("selection_pool", data_dir)
        if all(" == " in a and "(" not in expected(a) for a in t.hidden_tests.asserts)
        and len({expected(a) for a in t.hidden_tests.asserts}) == len(t.hidden_tests.asserts)
    )
    answer = expected(task.visible_tests.asserts[0])
    fake = FakeModels([f"def {task.entry_point}(*args):\n    return {answer}"])
    tools = Tools(fake.generator.spec, fake.rewriter.spec, StrategyConfig(max_steps=1), RewardConfig(), seed=0)
    result = evaluate_policy(TrainedPolicy(Direct(), False), [task], tools, fake.call, "visible")
    # the policy's feedback (visible) passed, yet selection scores the answer on every test of the task
    assert result["pass_rate"] == 0.0 and result["soft_pass"] == pytest.approx(1 / len(task.hidden_tests.asserts))


# -- 4. the paper's protocol as a labelled ablation -----------------------------------------------


def test_the_paper_protocol_label_is_checked_key_by_key(tmp_path):
    from promis_repro.workflow_config import validate_pipeline_config

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    tiny = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "paper-protocol.yaml").read_text())
    merged = {**tiny, **{k: v for k, v in overlay.items() if k not in ("strategy", "train")}}
    merged["strategy"] = {**tiny["strategy"], **overlay["strategy"]}
    merged["strategy"]["ppo"] = {**tiny["strategy"]["ppo"], **overlay["strategy"]["ppo"]}
    merged["train"] = {**tiny["train"], **overlay["train"]}
    validate_pipeline_config(merged, schema)
    merged["strategy"]["compose"] = True
    with pytest.raises(UserError, match=r"config key strategy\.compose: protocol: paper needs False"):
        validate_pipeline_config(merged, schema)


def test_the_paper_protocol_plans_on_the_paper_grid():
    configs = ["--configfile", "config/config.yaml", "config/paper-protocol.yaml"]
    target = "results/paper-protocol/codet5p-770m-py/mbpp/ppo/seed1/metrics.json"
    command = [sys.executable, "-m", "snakemake", "-n", "-p", target, *configs]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout + done.stderr
    assert "--protocol paper" in text and "--train-feedback all" in text and "--feedback oracle" in text


def test_the_public_codes_actor_critic_shares_its_trunk(data_dir):
    models = FakeModels([NEVER])
    tools = Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(), RewardConfig(), seed=0)
    env = PromptEnv(load_pool("train_pool", data_dir)[:2], tools, models.call)
    from stable_baselines3.common.vec_env import DummyVecEnv

    model = new_ppo_model(DummyVecEnv([lambda: env]), PPOConfig(policy="shared"), seed=0)
    policy = model.policy
    assert policy.share_features_extractor and policy.features_extractor is policy.pi_features_extractor
    shapes = [tuple(p.shape) for p in policy.features_extractor.parameters()]
    assert shapes == [(128, 10), (128,), (128, 128), (128,)]
    assert [tuple(p.shape) for p in policy.mlp_extractor.policy_net.parameters()] == [(64, 128), (64,)]
    assert [tuple(p.shape) for p in policy.mlp_extractor.value_net.parameters()] == [(64, 128), (64,)]
