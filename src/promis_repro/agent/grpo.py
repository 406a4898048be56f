"""``rl_rewriter``: the rewriter LM fine-tuned with TRL's GRPOTrainer so its prompts make the frozen
generator pass more train-pool tests.

One training example = one task of the decontaminated MBPP train pool, shown to the rewriter with
the same rewrite request as action 2 (description, function name, feedback of a first direct
attempt). Reward of a completion = SoftPass, on the task's own tests, of the code the frozen
generator writes from the rewritten description (the rewrite contract applies: an invalid answer
falls back as at test time). LoRA adapters (peft) keep multi-billion rewriters trainable; the adapter
is saved to ``OUT/adapter`` and, at test time, loaded over the rewriter as action 2 of
``rewrite_only``'s loop (strategy ``rl_rewriter``). TRL 1.13+ has no PPOTrainer, hence GRPO.

Checkpoints, resume after a kill, progress lines and the adapter: ``agent/trl_agent.py`` (shared with
``self_correct_rl``); a checkpoint records the reward's call count, which seeds the frozen generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from promis_repro.agent.env import check_training_tasks
from promis_repro.agent.trl_agent import (
    TRLRun,
    TRLSettings,
    grpo_arguments,
    lora_config,
    run_identity,
    train_with_trl,
)
from promis_repro.data.task import Task
from promis_repro.evaluation.levels import multi_score
from promis_repro.generation.prompts import build_prompt, extract_code
from promis_repro.rewards import RewardConfig
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.engine import ModelCall, derive_seed
from promis_repro.strategies.feedback import training_suites
from promis_repro.strategies.prompt_parts import editable_parts
from promis_repro.strategies.rewrite import parse_rewrite, rewrite_request


@dataclass(frozen=True)
class GRPOSettings(TRLSettings):
    """The ``grpo:`` section: the shared TRL settings (steps, group of rewrites per prompt, LoRA, ...) and these."""

    max_completion_length: int = 128  # tokens of one rewrite
    beta: float = 0.0  # KL coefficient (TRL's default)


def _first_feedback(tools: Tools, call_model: ModelCall, tasks: list[Task], train_feedback: str) -> dict[str, str]:
    """Feedback text of one direct attempt per task (what action 2 sees at its first use; ``visible``:
    from the task's visible test only, as at test time)."""
    spec = tools.generator_spec
    settings = replace(tools.code_settings(), seed=derive_seed(tools.seed, "grpo-first"))
    completions = call_model("generator", [build_prompt(t, spec) for t in tasks], settings)
    feedback = {}
    for task, completion in zip(tasks, completions, strict=True):
        code = extract_code(task, completion.text, spec)
        feedback[task.task_id] = training_suites(task, train_feedback)[0].evaluate(code).text
    return feedback


def code_scorer(reward: RewardConfig, train_feedback: str) -> Callable[[dict[str, Any], Task, str], float]:
    """``score(suites, task, code)``: SoftPass of ``code`` on the task's reward tests (``training_suites``'
    second), or under ``reward.kind == "multi"`` its multi-level score M (``rewards.py``); ``suites`` caches
    each task's reward suite (its canonical solution's resource use is measured once)."""

    def score(suites: dict[str, Any], task: Task, code: str) -> float:
        if task.task_id not in suites:
            suites[task.task_id] = training_suites(task, train_feedback)[1]
        if reward.kind != "multi":
            return suites[task.task_id].evaluate(code).soft
        return multi_score(suites[task.task_id].evaluate(code, reward.levels).levels or {}, reward.weights)

    return score


def make_reward(
    tools: Tools,
    call_model: ModelCall,
    tasks: dict[str, Task],
    train_feedback: str = "visible",
    calls: list[int] | None = None,
) -> Callable[..., list[float]]:
    """``reward(prompts, completions, task_id, **_) -> list[float]``: SoftPass (``multi``: the multi-level
    score) of the frozen generator's code (``visible``: on the task's held-out tests, the ones its rewrite
    request never showed).

    ``calls``: ``[n]``, the reward's calls so far (each seeds the generator; a checkpoint records it).
    """
    spec = tools.generator_spec
    calls = [0] if calls is None else calls
    score_code = code_scorer(tools.reward, train_feedback)
    reward_suites: dict[str, Any] = {}

    def reward(prompts: list[Any], completions: list[Any], task_id: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        prompts_for_generator = []
        for text, tid in zip(texts, task_id, strict=True):
            task = tasks[tid]
            part = editable_parts(task)
            rewrite = parse_rewrite(text, task.entry_point, part.text)
            prompts_for_generator.append(build_prompt(task, spec, part.compose(rewrite.text)))
        settings = replace(tools.code_settings(), seed=derive_seed(tools.seed, "grpo", calls[0]))
        calls[0] += 1
        outputs = call_model("generator", prompts_for_generator, settings)
        return [
            score_code(reward_suites, tasks[tid], extract_code(tasks[tid], output.text, spec))
            for output, tid in zip(outputs, task_id, strict=True)
        ]

    return reward


def train_rl_rewriter(
    tools: Tools,
    call_model: ModelCall,
    rewriter_location: str,
    train: list[Task],
    out: Path,
    settings: GRPOSettings,
    train_feedback: str = "visible",
    revision: str | None = None,
) -> dict[str, Any]:
    """Train (or resume from ``out``'s last checkpoint); writes ``out/adapter`` and ``out/grpo_history.json``.
    ``rewriter_location``/``revision``: the rewriter's weights (``weights_location``: a hub model's locked commit)."""
    check_training_tasks(train)
    identity = run_identity("grpo", settings, tools, train, train_feedback)
    run = TRLRun("rl_rewriter", "GRPO steps", out, identity, settings, "grpo_history.json")
    run.summary["grpo_settings"] = asdict(settings)

    def make_trainer(callbacks: list[Any]) -> Any:
        from datasets import Dataset
        from trl import GRPOTrainer

        feedback = _first_feedback(tools, call_model, train, train_feedback)
        rows = []
        for task in train:
            request = rewrite_request(
                tools.config.rewrite_template, editable_parts(task).text, task.entry_point, feedback[task.task_id]
            )
            rows.append({"prompt": [{"role": "user", "content": request}], "task_id": task.task_id})
        args = grpo_arguments(
            run,
            tools.seed,
            max_completion_length=settings.max_completion_length,
            beta=settings.beta,
            model_init_kwargs={"revision": revision} if revision else None,
        )
        reward = make_reward(tools, call_model, {t.task_id: t for t in train}, train_feedback, run.calls)
        return GRPOTrainer(
            model=rewriter_location,
            reward_funcs=reward,
            args=args,
            train_dataset=Dataset.from_list(rows),
            peft_config=lora_config(settings),
            callbacks=callbacks,
        )

    return train_with_trl(run, make_trainer)
