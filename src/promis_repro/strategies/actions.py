"""The three actions of the hybrid action space, and what one episode may use.

``Tools`` holds what a run shares (generator, rewriter, mutator, settings);
``EpisodeContext`` is one task's view of it: the public task, its feedback
suite, its budget and ledger, its random generator and its step log. Actions:

- 0 ``code(text)``: the generator writes code from the prompt built around
  ``text``; the code is run on the feedback tests.
- 1 ``mutate(text)``: EPiC's lexical mutation (no model call).
- 2 ``rewrite(text, feedback)``: the rewriter LLM rewrites the description.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from promis_repro.data.task import Task
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.prompts import build_prompt, completion_prefix, extract_code, stop_strings
from promis_repro.generation.registry import ModelSpec
from promis_repro.grid import ACTION_NAMES
from promis_repro.rewards import RewardConfig, step_reward
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.engine import Budget, Generate, Ledger, Request, Trajectory, derive_seed
from promis_repro.strategies.feedback import Feedback, FeedbackSuite
from promis_repro.strategies.mutation import LexicalMutator, MutationResult
from promis_repro.strategies.prompt_parts import PromptParts
from promis_repro.strategies.rewrite import RewriteResult, parse_rewrite, rewrite_request

#: why an episode ended (``stop`` in each task's cost entry); every strategy may use the same budget
SINGLE = "single generation"  # the strategy generates once by design (direct, lpo, the *_once rows)
PASSED = "visible feedback passed"  # it stopped early on a pass of the tests it may see
BUDGET = "budget spent"
OWN_END = "strategy's own end"  # its own limit or rule (max_steps, EPiC's acceptance, iteration limits)


@dataclass
class Tools:
    generator_spec: ModelSpec
    rewriter_spec: ModelSpec | None
    config: StrategyConfig
    reward: RewardConfig = field(default_factory=RewardConfig)
    seed: int = 0
    _mutator: LexicalMutator | None = None

    @property
    def mutator(self) -> LexicalMutator:
        if self._mutator is None:
            c = self.config
            self._mutator = LexicalMutator(
                probability=c.mutation_probability,
                n_variants=c.mutation_variants,
                threshold=c.mutation_threshold,
                top_k=c.mutation_top_k,
                embedder=c.embedder,
            )
        return self._mutator

    @property
    def budget(self) -> Budget:
        return Budget(self.config.max_generator_calls, self.config.max_rewriter_calls)

    def code_settings(self) -> DecodingSettings:
        c = self.config
        return DecodingSettings(c.temperature, c.top_p, c.max_new_tokens, stop_strings(self.generator_spec))

    def rewriter_settings(self) -> DecodingSettings:
        c = self.config
        return DecodingSettings(c.rewriter_temperature, c.rewriter_top_p, c.rewriter_max_new_tokens)


@dataclass
class Candidate:
    text: str  # the description the code was written from
    code: str
    feedback: Feedback
    completion: str
    step: int

    @property
    def fitness(self) -> float:
        return self.feedback.soft


class EpisodeContext:
    """One task's episode: its public task, prompt parts, feedback suite, budget, ledger, randomness and log.

    ``position`` is the task's index in its run divided by the run's number of tasks (an observation
    feature of the agent).
    """

    def __init__(
        self,
        task: Task,
        parts: PromptParts,
        suite: FeedbackSuite,
        tools: Tools,
        strategy: str,
        position: float = 0.0,
    ) -> None:
        self.task = task  # public view: no hidden tests, no reference solution
        self.parts = parts
        self.suite = suite
        self.tools = tools
        self.config = tools.config
        self.strategy = strategy
        self.position = position
        self.ledger = Ledger()
        self.rng = np.random.default_rng(derive_seed(tools.seed, task.task_id, strategy))
        self.trajectory = Trajectory(task.task_id, ledger=self.ledger)
        self.candidates: list[Candidate] = []
        self._previous_soft = 0.0
        self._calls = {"generator": 0, "rewriter": 0}

    # -- state (a checkpointed environment resumes mid-episode) ----------
    def state(self) -> dict[str, Any]:
        """What the next call depends on beyond the constructor's arguments: call counters, last SoftPass."""
        return {"calls": dict(self._calls), "previous_soft": self._previous_soft}

    def restore(self, state: dict[str, Any]) -> None:
        self._calls = dict(state["calls"])
        self._previous_soft = float(state["previous_soft"])

    # -- budget ---------------------------------------------------------
    def remaining(self, role: str) -> int:
        limit = self.tools.budget.limit(role)
        if role == "rewriter" and self.tools.rewriter_spec is None:
            return 0
        return limit - self.ledger.count(role)

    def _settings(self, role: str, purpose: str, temperature: float | None = None) -> DecodingSettings:
        base = self.tools.code_settings() if role == "generator" else self.tools.rewriter_settings()
        if temperature is not None:
            base = replace(base, temperature=temperature)
        if purpose not in ("code", "tests"):
            base = replace(base, stop=())
        index = self._calls[role]
        self._calls[role] += 1
        if base.greedy:
            # no seed: greedy calls of every task share settings, and so batch together whatever call each
            # task is at (the seed would change nothing but the batching)
            return replace(base, seed=0)
        # tasks at the same call index share settings (and so batch together);
        # the per-row seed mixes in the prompt text
        return replace(base, seed=derive_seed(self.tools.seed, role, index))

    def ask(
        self, role: str, prompt: ChatPrompt, purpose: str, temperature: float | None = None
    ) -> Generator[Request, Any, Completion]:
        completion = yield Generate(role, prompt, self._settings(role, purpose, temperature), purpose)
        return completion

    # -- action 0 -------------------------------------------------------
    def model_prompt(self, text: str) -> ChatPrompt:
        return build_prompt(self.task, self.tools.generator_spec, self.parts.compose(text))

    def extract(self, completion: str, prefix: str = "") -> str:
        return extract_code(self.task, completion, self.tools.generator_spec, prefix=prefix)

    def code(
        self, text: str, prompt: ChatPrompt | None = None, prefix: str | None = None, temperature: float | None = None
    ) -> Generator[Request, Any, Candidate]:
        """Write code from ``text`` (or from an explicit ``prompt``) and run it on the feedback tests."""
        spec = self.tools.generator_spec
        prompt = prompt or self.model_prompt(text)
        if prefix is None:
            completion_model = spec.prompt_format == "completion"
            prefix = completion_prefix(self.task, self.parts.compose(text)) if completion_model else ""
        completion = yield from self.ask("generator", prompt, "code", temperature)
        code = self.extract(completion.text, prefix)
        feedback = self.suite.evaluate(code)
        candidate = Candidate(text, code, feedback, completion.text, len(self.candidates))
        self.candidates.append(candidate)
        return candidate

    # -- action 1 -------------------------------------------------------
    def mutate(self, text: str) -> MutationResult:
        return self.tools.mutator.mutate(text, self.task, self.rng)

    # -- action 2 -------------------------------------------------------
    def rewrite(
        self, text: str, feedback: str, template: str | None = None, temperature: float | None = None
    ) -> Generator[Request, Any, RewriteResult]:
        request = rewrite_request(template or self.config.rewrite_template, text, self.task.entry_point, feedback)
        prompt = ChatPrompt(messages=(("user", request),))
        completion = yield from self.ask("rewriter", prompt, "rewrite", temperature)
        result = parse_rewrite(completion.text, self.task.entry_point, text)
        return result

    # -- one step of the hybrid action space ----------------------------
    def act(
        self, action: int, text: str, last_feedback: str
    ) -> Generator[Request, Any, tuple[Candidate, dict[str, Any]]]:
        """Apply ``action`` to ``text`` (or to the original prompt, without ``compose``), then generate code.

        Returns the candidate and what the action did (mutation or rewrite details) for the step log.
        """
        extra: dict[str, Any] = {}
        if action == 0:
            text = self.base_text(text)
        elif action == 1:
            mutation = self.mutate(self.base_text(text))
            text, extra["mutation"] = mutation.text, mutation.as_dict()
        elif action == 2:
            if self.remaining("rewriter") > 0:
                rewrite = yield from self.rewrite(self.base_text(text), last_feedback)
                text, extra["rewrite"] = rewrite.text, rewrite.as_dict()
            else:
                extra["rewrite"] = {"valid": False, "reason": "rewriter budget spent"}
        elif action != 0:
            raise ValueError(f"unknown action {action!r}")
        candidate = yield from self.code(text)
        return candidate, extra

    # -- bookkeeping ----------------------------------------------------
    def base_text(self, current: str) -> str:
        """What the next action edits: the current prompt (compose) or the original (the public code)."""
        return current if self.config.compose else self.parts.text

    def log(self, action: int | str, candidate: Candidate, reward: float | None = None, **extra: Any) -> None:
        """One trajectory row. ``reward``: the step's reward as the caller computed it (the agent's
        environment, on its reward tests); else it follows from the feedback, except that a ``multi``
        reward, whose levels test-time feedback does not measure, is logged as null."""
        fb = candidate.feedback
        if reward is None and self.tools.reward.kind != "multi":
            reward = step_reward(self.tools.reward, fb.passed, fb.soft, self._previous_soft)
        self._previous_soft = fb.soft
        self.trajectory.steps.append(
            {
                "task_id": self.task.task_id,
                "strategy": self.strategy,
                "step": len(self.trajectory.steps),
                "action": action if isinstance(action, int) else None,
                "action_name": ACTION_NAMES.get(action, action) if isinstance(action, int) else action,
                "prompt": candidate.text,
                "code": candidate.code,
                "feedback": fb.as_dict(),
                "reward": None if reward is None else round(reward, 6),
                "generator_calls": self.ledger.count("generator", budgeted_only=False),
                # the calls that count against the budget so far (the budget curve's k)
                "budget_calls": self.ledger.count("generator"),
                "rewriter_calls": self.ledger.count("rewriter", budgeted_only=False),
                **extra,
            }
        )

    def best(self) -> Candidate:
        # highest feedback fitness; the earliest on ties (so with no signal the first answer stands)
        return max(self.candidates, key=lambda c: (c.fitness, -c.step))

    def stop_reason(self) -> str:
        """Why the episode ends: a pass of the tests it sees, a spent budget (either model's), or its own rule."""
        if self.candidates and self.candidates[-1].feedback.passed:
            return PASSED
        rewriter_spent = self.ledger.count("rewriter") > 0 and self.remaining("rewriter") <= 0
        if self.remaining("generator") <= 0 or rewriter_spent:
            return BUDGET
        return OWN_END

    def finish(self, chosen: Candidate | None = None, stop: str | None = None, **info: Any) -> Trajectory:
        """End the episode with ``chosen`` (default: the best by feedback); ``stop``: why (default: inferred)."""
        info["stop"] = stop or self.stop_reason()
        chosen = chosen or (self.best() if self.candidates else None)
        if chosen is not None:
            self.trajectory.final_code = chosen.code
            self.trajectory.final_step = chosen.step
            self.trajectory.final_fitness = chosen.fitness
        self.trajectory.info.update(info)
        return self.trajectory
