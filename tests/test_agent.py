"""The PPO environment and training (scripted models for speed), resume after SIGKILL, and the tiny-model runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from strategy_fakes import FakeModels

from promis_repro.agent.env import PromptEnv
from promis_repro.agent.ppo import PPOConfig
from promis_repro.agent.trained import load_trained
from promis_repro.data.pools import load_pool
from promis_repro.data.registry import load_benchmark
from promis_repro.errors import UserError
from promis_repro.rewards import RewardConfig
from promis_repro.strategies import feedback as feedback_module
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.policy import TrainedPolicy
from promis_repro.strategies.runner import run_strategy

HERE = Path(__file__).parent
TINY = "smollm2-135m-instruct"


def _tools(models, **config):
    return Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(**config), RewardConfig(), seed=0)


@pytest.mark.parametrize("embeddings", [False, True])
def test_environment_passes_check_env(data_dir, embeddings):
    models = FakeModels(["def f():\n    return 0"])
    env = PromptEnv(load_pool("train_pool", data_dir)[:3], _tools(models), models.call, embeddings=embeddings)
    check_env(env, skip_render_check=True)
    observation, _ = env.reset()
    assert observation.shape == ((10 + 768) if embeddings else 10,)


def test_episode_ends_on_pass_or_after_max_steps(data_dir):
    tasks = load_pool("train_pool", data_dir)[:2]
    failing = FakeModels(["def nothing():\n    return None"])
    env = PromptEnv(tasks, _tools(failing, max_steps=4), failing.call)
    env.reset(options={"task_index": 0})
    outcomes = [env.step(a)[2:4] for a in (0, 1, 2, 0)]
    assert outcomes == [(False, False)] * 3 + [(False, True)]
    assert env.finished[-1]["length"] == 4 and env.finished[-1]["action_1"] == 1
    solution = tasks[0].reference_solution
    passing = FakeModels([solution])
    env = PromptEnv(tasks, _tools(passing), passing.call)
    env.reset(options={"task_index": 0})
    _, reward, terminated, truncated, _ = env.step(0)
    assert terminated and not truncated and reward == pytest.approx(1 + 0.5 - 0.05)


def test_multi_reward_is_the_change_of_the_multi_level_score(data_dir):
    """reward: {kind: multi}: r_t = M_t - M_(t-1) with M from the levels of the step's code on the reward's
    tests (the held-out tests under ``visible``), so a passing first step earns its whole M."""
    from promis_repro.evaluation.levels import multi_score
    from promis_repro.strategies.feedback import training_suites

    task = load_pool("train_pool", data_dir)[0]
    reward = RewardConfig(kind="multi")
    suite = training_suites(task, "visible")[1]
    steps = {}
    for name, program in (("bad", "def nothing():\n    return None"), ("good", task.reference_solution)):
        models = FakeModels([program])
        tools = Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(max_steps=3), reward, seed=0)
        env = PromptEnv([task], tools, models.call)
        env.reset(options={"task_index": 0})
        first = env.step(0)
        steps[name] = (first[1], first[2], env.step(0)[1] if not first[2] else None)
        steps[name + "_m"] = multi_score(suite.evaluate(program, reward.levels).levels, reward.weights)
    assert 0 < steps["bad_m"] < 0.7 and steps["good_m"] > 0.9  # parses and imports, no test; canonical: near 1
    bad_first, bad_done, bad_second = steps["bad"]
    assert bad_first == pytest.approx(steps["bad_m"], abs=0.02) and not bad_done
    assert bad_second == pytest.approx(0.0, abs=0.02)  # the same code again: M unchanged
    good_first, good_done, _ = steps["good"]
    assert good_done and good_first == pytest.approx(steps["good_m"], abs=0.05)  # efficiency is measured


def test_environment_refuses_evaluation_tasks(data_dir):
    models = FakeModels(["pass"])
    with pytest.raises(UserError, match="not from the MBPP train or selection pool"):
        PromptEnv(load_benchmark("mbppplus", data_dir)[:2], _tools(models), models.call)
    # an MBPP train-split task that did not come through the decontaminated pool (Mbpp/602 is an MBPP+ task)
    contaminated = [t for t in load_benchmark("mbpp", data_dir) if t.task_id == "602"]
    assert contaminated and contaminated[0].extra["split"] == "train"
    with pytest.raises(UserError, match="not from the MBPP train or selection pool"):
        PromptEnv(contaminated, _tools(models), models.call)


class _StepScriptedPolicy:
    """Picks ``actions[step]`` (the step is an observation feature) and records every observation it is shown."""

    def __init__(self, actions: list[int]) -> None:
        self.actions = actions
        self.seen: list[np.ndarray] = []

    def predict(self, observation, deterministic=True):
        self.seen.append(np.array(observation, copy=True))
        return np.array(self.actions[round(float(observation[3]) * 10)]), None


@pytest.mark.parametrize(("embeddings", "kind"), [(False, "visible"), (True, "visible"), (False, "position")])
def test_training_and_test_observations_are_identical_on_the_same_inputs(data_dir, embeddings, kind):
    tasks = load_pool("train_pool", data_dir)[:3]
    actions = [2, 0, 2]  # rewrite and direct generation: no mutation randomness, so both sides see the same prompts
    models = FakeModels(["def f():\n    return 0"])  # never passes: every step runs
    tools = _tools(models, max_steps=len(actions))
    # training side: the environment under test-time conditions (visible feedback, every task showing its test)
    env = PromptEnv(
        tasks,
        tools,
        models.call,
        train_feedback="visible",
        no_visible_fraction=0.0,
        embeddings=embeddings,
        observation=kind,
    )
    training = [env.reset(options={"task_index": 1})[0]]
    for action in actions[:-1]:
        training.append(env.step(action)[0])
    # test side: the ppo strategy's episodes on the same three tasks, task 1 at the same position
    policy = _StepScriptedPolicy(actions)
    run_strategy(
        "ppo",
        tasks,
        models,
        seed=0,
        feedback="visible",
        config=tools.config,
        trained=TrainedPolicy(policy, embeddings, kind),
        progress=False,
    )
    assert len(policy.seen) == len(actions) * len(tasks)
    # every task takes the same action at each step, so the episodes advance in lockstep, in task order
    testing = policy.seen[1 :: len(tasks)]
    assert [round(float(o[3]) * 10) for o in testing] == list(range(len(actions)))
    if kind == "position":
        assert all(o[4] == np.float32(1 / 3) for o in testing)
    for step, (train_obs, test_obs) in enumerate(zip(training, testing, strict=True)):
        assert train_obs.dtype == test_obs.dtype == np.float32
        np.testing.assert_array_equal(train_obs, test_obs, err_msg=f"step {step}")
    assert len({o[0] for o in testing}) > 1, "the prompt changed along the episode (rewrites reached the observation)"


def _curves(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text() for name in ("curves.csv", "updates.csv", "evaluations.csv")}


def _parameters(out: Path) -> list[np.ndarray]:
    from stable_baselines3 import PPO

    policy = PPO.load(out / "policy.zip", device="cpu").policy
    return [p.detach().numpy().copy() for p in policy.parameters()]


def test_training_resumes_after_sigkill_and_ends_where_an_uninterrupted_run_does(data_dir, tmp_path):
    script = [sys.executable, str(HERE / "ppo_fake_train.py")]
    scratch = tmp_path / "tmpdir"  # SB3's default logger would leave an SB3-<time> directory here per update
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    whole = tmp_path / "whole"
    done = subprocess.run([*script, str(whole), str(data_dir)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*script, str(killed), str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pointer = killed / "checkpoint.json"
        if pointer.exists() and json.loads(pointer.read_text())["update"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "policy.zip").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(
        [*script, str(killed), str(data_dir)], capture_output=True, text=True, timeout=600, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(scratch.glob("SB3-*")), "training left SB3 logger directories behind"
    assert _curves(killed) == _curves(whole)
    for a, b in zip(_parameters(killed), _parameters(whole), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert PPOConfig().learning_rate == 3e-4 and PPOConfig().n_epochs == 4 and PPOConfig().ent_coef == 0.01


def test_trained_policy_never_sees_hidden_tests(data_dir, tmp_path, monkeypatch):
    sys.path.insert(0, str(HERE))
    from ppo_fake_train import train

    out = tmp_path / "agent"
    train(out, str(data_dir))
    (out / "training.json").write_text(json.dumps({"ppo_config": {"embeddings": False}}))
    tasks = load_benchmark("mbppplus", data_dir)[:2]
    seen = []
    original = feedback_module.evaluate_program

    def spy(task, code, tests=None, **kw):
        seen.append(tests)
        return original(task, code, tests, **kw)

    monkeypatch.setattr(feedback_module, "evaluate_program", spy)
    # the real path: run --strategy ppo --trained DIR loads the policy the same way
    trajectories, _ = run_strategy(
        "ppo",
        tasks,
        FakeModels(["def f():\n    return 0"]),
        seed=0,
        feedback="visible",
        config=StrategyConfig(max_steps=4),
        trained=load_trained("ppo", out),
        progress=False,
    )
    assert seen and not any(tests is t.hidden_tests for tests in seen for t in tasks)
    assert all(1 <= len(t.steps) <= 4 and all(s["action"] in (0, 1, 2) for s in t.steps) for t in trajectories)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promis_repro.cli", *args], capture_output=True, text=True, timeout=900
    )


def test_ppo_on_the_tiny_model_writes_a_loadable_policy(data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "max_steps: 2\nmax_new_tokens: 64\nrewriter_max_new_tokens: 48\n"
        "ppo:\n  n_steps: 4\n  batch_size: 4\n  eval_every: 4\n"
    )
    agent = tmp_path / "agent"
    trained = _cli(
        "train",
        "--agent",
        "ppo",
        "--model",
        TINY,
        "--rewriter",
        TINY,
        "--seed",
        "1",
        "--out",
        str(agent),
        "--timesteps",
        "4",
        "--limit",
        "2",
        "--selection-limit",
        "1",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((agent / "training.json").read_text())
    assert summary["complete"] and summary["timesteps"] == 4 and summary["provenance"]["seed"] == 1
    assert "r_t =" in summary["reward"]["formula"]
    assert (agent / "policy.zip").exists() and (agent / "curves.csv").exists()
    out = tmp_path / "run"
    ran = _cli(
        "run",
        "--strategy",
        "ppo",
        "--model",
        TINY,
        "--rewriter",
        TINY,
        "--benchmark",
        "mbppplus",
        "--trained",
        str(agent),
        "--limit",
        "2",
        "--out",
        str(out),
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--quiet",
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    steps = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert steps and all(s["action"] in (0, 1, 2) for s in steps)
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2


def test_grpo_rewriter_trains_on_cpu_and_serves_as_action_2(data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "max_new_tokens: 48\nrewriter_max_new_tokens: 32\nmax_generator_calls: 2\n"
        "grpo:\n  num_generations: 2\n  per_device_train_batch_size: 2\n  max_completion_length: 24\n"
    )
    agent = tmp_path / "rewriter"
    trained = _cli(
        "train",
        "--agent",
        "rl_rewriter",
        "--model",
        TINY,
        "--rewriter",
        TINY,
        "--out",
        str(agent),
        "--timesteps",
        "2",
        "--limit",
        "2",
        "--selection-limit",
        "1",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (agent / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((agent / "training.json").read_text())["steps"] == 2
    out = tmp_path / "run"
    ran = _cli(
        "run",
        "--strategy",
        "rl_rewriter",
        "--model",
        TINY,
        "--rewriter",
        TINY,
        "--benchmark",
        "mbppplus",
        "--trained",
        str(agent),
        "--limit",
        "1",
        "--out",
        str(out),
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--quiet",
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    cost = json.loads((out / "cost.json").read_text())
    assert cost["provenance"]["model"]["rewriter"]["adapter_sha256"]
