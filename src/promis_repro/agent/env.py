"""The prompt-refinement environment (gymnasium): one episode = one task of the MBPP train pool.

Actions ``Discrete(3)`` in the paper's numbering (0 direct, 1 mutate, 2 rewrite); each step applies
the action to the current prompt (``compose``, default) or to the original one (the public code's
behaviour), generates code and runs it on the task's feedback tests. The episode terminates when
every feedback test passes and is truncated after ``max_steps`` (10; with ``truncation_is_terminal``,
the paper protocol's Monte-Carlo returns, the step limit is a true end). Rewards: ``rewards.py``.

Training under test-time conditions (``train_feedback``, ``strategies.feedback.training_suites``):
with ``visible`` (default) the policy sees feedback from the task's visible test only, exactly as
the ``ppo`` strategy does at test time, and the reward's pass/soft terms come from the task's other
(held-out) tests; a share ``no_visible_fraction`` of episodes presents the task without a visible
test (no shown assert, no feedback), as that share of evaluation tasks comes. ``all``: feedback and
reward from every test of the task (the paper's protocol).

Training tasks must come from the decontaminated MBPP pools (``data/pools.py``): the environment
refuses any other task, so the policy never sees an evaluation task or its tests.

Sampling seeds and mutation randomness are derived from (seed, episode, step), so an episode is a
pure function of the environment's state and a resumed training run replays exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from promis_repro.data.pools import POOL_NAMES
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.evaluation.levels import multi_score
from promis_repro.grid import ACTION_NAMES
from promis_repro.rewards import step_reward
from promis_repro.strategies.actions import EpisodeContext, Tools
from promis_repro.strategies.engine import Budget, ModelCall, derive_seed, drive
from promis_repro.strategies.feedback import FeedbackSuite, public_view, training_suites, without_visible_tests
from promis_repro.strategies.policy import OBSERVATION_HIGH, OBSERVATION_LOW, observation_size, observe
from promis_repro.strategies.prompt_parts import editable_parts

TRAINING_SPLITS = ("train", "validation")


def check_training_tasks(tasks: list[Task]) -> None:
    """Only tasks of the decontaminated pools (``load_pool``: MBPP train/validation) may train or select."""
    for task in tasks:
        from_pool = task.extra.get("pool") in POOL_NAMES
        if task.benchmark != "mbpp" or task.extra.get("split") not in TRAINING_SPLITS or not from_pool:
            raise UserError(
                f"task {task.benchmark}/{task.task_id} is not from the MBPP train or selection pool; "
                "agents train on the decontaminated pools only"
            )


def run_sync(episode: Any, call_model: ModelCall, ctx: EpisodeContext) -> Any:
    """Run one coroutine (a step) to completion against the models, under the context's budget."""
    return drive({0: episode}, call_model, {0: ctx.ledger}, Budget(10**9, 10**9))[0]


class PromptEnv(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        tasks: list[Task],
        tools: Tools,
        call_model: ModelCall,
        *,
        train_feedback: str = "visible",
        no_visible_fraction: float = 0.0,
        embeddings: bool = False,
        observation: str = "visible",
        truncation_is_terminal: bool = False,
        training: bool = True,
    ) -> None:
        super().__init__()
        if training:
            check_training_tasks(tasks)
        if not tasks:
            raise UserError("the environment needs at least one task")
        self.tasks = tasks
        self.tools = tools
        self.call_model = call_model
        self.train_feedback = train_feedback
        self.no_visible_fraction = no_visible_fraction
        self.embeddings = embeddings
        self.observation_kind = observation
        self.truncation_is_terminal = truncation_is_terminal
        self.reward_suite: FeedbackSuite | None = None
        # one reward suite per task for the whole training: the multi reward measures its canonical solution once
        self._reward_suites: dict[str, FeedbackSuite] = {}
        self.max_steps = tools.config.max_steps
        self.action_space = gym.spaces.Discrete(3)
        size = observation_size(embeddings)
        # features are >= 0 and embeddings in [-1, 1]; lengths are clipped at the upper bound
        self.observation_space = gym.spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, shape=(size,), dtype=np.float32)
        self.episode = -1
        self.ctx: EpisodeContext | None = None
        self.state: dict[str, Any] = {}
        #: one row per finished episode (learning curves)
        self.finished: list[dict[str, Any]] = []

    # -- state (for checkpoints) ----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"episode": self.episode, "state": dict(self.state), "finished": list(self.finished)}

    def set_state(self, saved: dict[str, Any]) -> None:
        self.episode = saved["episode"]
        self.finished = list(saved["finished"])
        self.state = dict(saved["state"])
        if self.state:
            self.ctx = self._context(self.state["task_index"], self.episode)
            self.ctx.restore(self.state["context"])

    # -- gymnasium API ------------------------------------------------------------------------------
    def _context(self, index: int, episode: int) -> EpisodeContext:
        """Episode ``episode`` on task ``index``: its presentation, feedback suite and reward suite."""
        task = self.tasks[index]
        # one mutator (WordNet, tagger, synonym cache) for every episode
        tools = replace(self.tools, seed=derive_seed(self.tools.seed, "episode", episode), _mutator=self.tools.mutator)
        draw = np.random.default_rng(derive_seed(self.tools.seed, "presentation", episode)).random()
        show_visible = self.train_feedback == "all" or draw >= self.no_visible_fraction
        feedback_suite, reward_suite = training_suites(task, self.train_feedback, show_visible)
        shared = feedback_suite is reward_suite  # ``all``: one suite for both
        self.reward_suite = self._reward_suites.setdefault(task.task_id, reward_suite)
        if shared:
            feedback_suite = self.reward_suite
        presented = task if show_visible else without_visible_tests(task)
        position = index / len(self.tasks)
        return EpisodeContext(public_view(presented), editable_parts(presented), feedback_suite, tools, "ppo", position)

    def _observation(self) -> np.ndarray:
        assert self.ctx is not None
        s = self.state
        return observe(
            self.ctx, s["text"], s["step"], s["last_feedback"], embeddings=self.embeddings, kind=self.observation_kind
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode += 1
        if options and "task_index" in options:
            index = int(options["task_index"])
        else:
            index = int(
                np.random.default_rng(derive_seed(self.tools.seed, "task", self.episode)).integers(len(self.tasks))
            )
        self.ctx = self._context(index, self.episode)
        self.state = {
            "task_index": index,
            "text": self.ctx.parts.text,
            "step": 0,
            "last_feedback": "",
            "previous_soft": 0.0,
            "previous_multi": 0.0,
            "return": 0.0,
            "actions": [0, 0, 0],
            "best_soft": 0.0,
            "passed": False,
            "visible_passed": False,
            "shown_visible": self.ctx.suite.n_tests > 0,
            "context": self.ctx.state(),
        }
        return self._observation(), {"task_id": self.tasks[index].task_id}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self.ctx is not None, "call reset() first"
        action = int(action)
        s = self.state
        ctx = self.ctx
        ctx.rng = np.random.default_rng(derive_seed(self.tools.seed, "mutation", self.episode, s["step"]))
        candidate, extra = run_sync(ctx.act(action, s["text"], s["last_feedback"]), self.call_model, ctx)
        feedback = candidate.feedback  # what the policy sees: the feedback suite's result
        # what the reward counts: the held-out tests under ``visible``, the same suite under ``all``
        reward_config = self.tools.reward
        if reward_config.kind == "multi":  # the levels too (the feedback the policy saw did not measure them)
            scored = self.reward_suite.evaluate(candidate.code, reward_config.levels)
        else:
            scored = feedback if self.reward_suite is ctx.suite else self.reward_suite.evaluate(candidate.code)
        # a suite without tests measures no level: M = 0
        multi = multi_score(scored.levels or {}, reward_config.weights) if reward_config.kind == "multi" else None
        reward = step_reward(reward_config, scored.passed, scored.soft, s["previous_soft"], multi, s["previous_multi"])
        ctx.log(action, candidate, reward=reward, **extra)
        s["text"], s["last_feedback"], s["previous_soft"] = candidate.text, feedback.text, scored.soft
        s["previous_multi"] = multi or 0.0
        s["step"] += 1
        s["return"] += reward
        s["actions"][action] += 1
        s["best_soft"] = max(s["best_soft"], scored.soft)
        s["passed"] = s["passed"] or scored.passed
        s["visible_passed"] = s["visible_passed"] or feedback.passed
        s["context"] = ctx.state()
        # the episode ends as a test-time episode does: on a pass of the tests the policy sees
        terminated = feedback.passed
        at_limit = not terminated and s["step"] >= self.max_steps
        terminated = terminated or (at_limit and self.truncation_is_terminal)
        truncated = at_limit and not self.truncation_is_terminal
        info = {"task_id": ctx.task.task_id, "action_name": ACTION_NAMES[action], "soft": scored.soft}
        if terminated or truncated:
            self.finished.append(
                {
                    "episode": self.episode,
                    "task_id": ctx.task.task_id,
                    "return": round(s["return"], 6),
                    "length": s["step"],
                    "passed": s["passed"],
                    "best_soft": s["best_soft"],
                    "visible_passed": s["visible_passed"],
                    "shown_visible": s["shown_visible"],
                    "action_0": s["actions"][0],
                    "action_1": s["actions"][1],
                    "action_2": s["actions"][2],
                }
            )
        return self._observation(), float(reward), terminated, truncated, info
