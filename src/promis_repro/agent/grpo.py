"""``rl_rewriter``: the rewriter LM fine-tuned with TRL's GRPOTrainer so its prompts make the frozen
generator pass more train-pool tests.

One training example = one task of the decontaminated MBPP train pool, shown to the rewriter with
the same rewrite request as action 2 (description, function name, feedback of a first direct
attempt). Reward of a completion = SoftPass, on the task's own tests, of the code the frozen
generator writes from the rewritten description (the rewrite contract applies: an invalid answer
falls back as at test time). LoRA adapters (peft) keep multi-billion rewriters trainable; the adapter
is saved to ``OUT/adapter`` and, at test time, loaded over the rewriter as action 2 of
``rewrite_only``'s loop (strategy ``rl_rewriter``). TRL 1.13+ has no PPOTrainer, hence GRPO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from promis_repro.agent.env import check_training_tasks
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.generation.prompts import build_prompt, extract_code
from promis_repro.generation.registry import ModelSpec
from promis_repro.io import atomic_write_json, sha256_of
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.engine import ModelCall, derive_seed
from promis_repro.strategies.feedback import training_suites
from promis_repro.strategies.prompt_parts import editable_parts
from promis_repro.strategies.rewrite import parse_rewrite, rewrite_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GRPOSettings:
    max_steps: int = 200  # GRPO optimizer steps
    learning_rate: float = 1e-5  # for the LoRA adapter
    num_generations: int = 4  # rewrites sampled per prompt (GRPO's group)
    per_device_train_batch_size: int = 4  # TRL: the global batch must be a multiple of num_generations
    gradient_accumulation_steps: int = 1
    max_completion_length: int = 128  # tokens of one rewrite
    temperature: float = 0.9  # sampling temperature of the rewrites
    beta: float = 0.0  # KL coefficient (TRL's default)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scale numerator (alpha / r)
    lora_dropout: float = 0.05


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


def make_reward(
    tools: Tools, call_model: ModelCall, tasks: dict[str, Task], train_feedback: str = "visible"
) -> Callable[..., list[float]]:
    """``reward(prompts, completions, task_id, **_) -> list[float]``: SoftPass of the frozen generator's code
    (``visible``: on the task's held-out tests, the ones its rewrite request never showed)."""
    spec = tools.generator_spec
    calls = [0]

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
        scores = []
        for output, tid in zip(outputs, task_id, strict=True):
            task = tasks[tid]
            code = extract_code(task, output.text, spec)
            scores.append(training_suites(task, train_feedback)[1].evaluate(code).soft)
        return scores

    return reward


def train_rl_rewriter(
    tools: Tools,
    call_model: ModelCall,
    rewriter_location: str,
    train: list[Task],
    out: Path,
    settings: GRPOSettings,
    train_feedback: str = "visible",
) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    check_training_tasks(train)
    feedback = _first_feedback(tools, call_model, train, train_feedback)
    rows = []
    for task in train:
        request = rewrite_request(
            tools.config.rewrite_template, editable_parts(task).text, task.entry_point, feedback[task.task_id]
        )
        rows.append({"prompt": [{"role": "user", "content": request}], "task_id": task.task_id})
    dataset = Dataset.from_list(rows)
    args = GRPOConfig(
        output_dir=str(out / "trainer"),
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        num_generations=settings.num_generations,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        seed=tools.seed,
        use_cpu=not _cuda(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules="all-linear",
    )
    trainer = GRPOTrainer(
        model=rewriter_location,
        reward_funcs=make_reward(tools, call_model, {t.task_id: t for t in train}, train_feedback),
        args=args,
        train_dataset=dataset,
        peft_config=lora,
    )
    trainer.train()
    adapter = out / "adapter"
    trainer.save_model(str(adapter))
    history = [{k: v for k, v in row.items() if isinstance(v, int | float)} for row in trainer.state.log_history]
    rewards = [row["reward"] for row in history if "reward" in row]
    summary = {
        "adapter": str(adapter),
        "steps": trainer.state.global_step,
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        "grpo_settings": asdict(settings),
        "log_history": history,
    }
    atomic_write_json(out / "grpo_history.json", summary)
    return summary


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def adapter_directory(directory: str | Path) -> Path:
    """The adapter a ``train --agent rl_rewriter`` run wrote into ``directory``; a one-line error if there is none."""
    adapter = Path(directory) / "adapter"
    if not (adapter / "adapter_model.safetensors").exists():
        raise UserError(f"no trained rewriter adapter in {directory}; train it: promis-repro train --agent rl_rewriter")
    return adapter


def adapter_spec(base: ModelSpec, directory: str | Path) -> ModelSpec:
    """The rewriter with a trained adapter: its identity (cache keys, provenance) includes the adapter's hash."""
    adapter = adapter_directory(directory)
    digest = sha256_of(adapter / "adapter_model.safetensors")
    return replace(
        base, name=f"{base.name}+rl", extra={**base.extra, "adapter": str(adapter), "adapter_sha256": digest}
    )
