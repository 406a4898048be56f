"""``rl_rewriter``: the rewriter LM fine-tuned with TRL's GRPOTrainer so its prompts make the frozen
generator pass more train-pool tests.

One training example = one task of the decontaminated MBPP train pool, shown to the rewriter with
the same rewrite request as action 2 (description, function name, feedback of a first direct
attempt). Reward of a completion = SoftPass, on the task's own tests, of the code the frozen
generator writes from the rewritten description (the rewrite contract applies: an invalid answer
falls back as at test time). LoRA adapters (peft) keep multi-billion rewriters trainable; the adapter
is saved to ``OUT/adapter`` and, at test time, loaded over the rewriter as action 2 of
``rewrite_only``'s loop (strategy ``rl_rewriter``). TRL 1.13+ has no PPOTrainer, hence GRPO.

Checkpoints every ``checkpoint_every`` steps and at the end: the Trainer's own (adapter weights,
optimizer, scheduler, step and log history, torch/numpy/python random states) in
``OUT/trainer/checkpoint-N``, plus this module's ``promis_state.json`` (the run's identity and the
reward's call count, which seeds the frozen generator); ``OUT/checkpoint.json`` names the last
complete one atomically (``agent/checkpoints.py``). A killed run restarted with the same arguments
resumes there.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from promis_repro.agent.checkpoints import CHECKPOINT_DIRECTORIES, CheckpointPointer
from promis_repro.agent.env import check_training_tasks
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.generation.prompts import build_prompt, extract_code
from promis_repro.generation.registry import ModelSpec
from promis_repro.io import atomic_write_json, sha256_of
from promis_repro.progress import Progress
from promis_repro.provenance import config_hash
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.engine import ModelCall, derive_seed
from promis_repro.strategies.feedback import training_suites
from promis_repro.strategies.prompt_parts import editable_parts
from promis_repro.strategies.rewrite import parse_rewrite, rewrite_request

log = logging.getLogger(__name__)

CHECKPOINT_STATE = "promis_state.json"  # in each checkpoint: the run's identity and the reward's call count
# what a checkpoint holds besides the adapter's files (``save_model``'s)
_TRAINER_ONLY = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", CHECKPOINT_STATE}


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
    checkpoint_every: int = 10  # GRPO steps between checkpoints (one is also taken at the end)

    def check(self, where: str) -> None:
        if self.checkpoint_every < 1:
            raise UserError(f"{where}: checkpoint_every must be >= 1")


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
    tools: Tools,
    call_model: ModelCall,
    tasks: dict[str, Task],
    train_feedback: str = "visible",
    calls: list[int] | None = None,
) -> Callable[..., list[float]]:
    """``reward(prompts, completions, task_id, **_) -> list[float]``: SoftPass of the frozen generator's code
    (``visible``: on the task's held-out tests, the ones its rewrite request never showed).

    ``calls``: ``[n]``, the reward's calls so far (each seeds the generator; a checkpoint records it).
    """
    spec = tools.generator_spec
    calls = [0] if calls is None else calls

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


def _identity(tools: Tools, train: list[Task], settings: GRPOSettings, train_feedback: str) -> str:
    """What a checkpoint must match to be resumed (how often checkpoints are taken may change)."""
    values = asdict(settings)
    del values["checkpoint_every"]
    return config_hash(
        {
            "grpo": values,
            "train_feedback": train_feedback,
            "seed": tools.seed,
            "train": [t.task_id for t in train],
            # the weights (a relocked model is another run)
            "generator": tools.generator_spec.identity(),
            "rewriter": tools.rewriter_spec.identity() if tools.rewriter_spec else None,
            "strategy": tools.config.as_dict(),
            "reward": tools.reward.as_dict(),
        }
    )


def _resume_point(out: Path, identity: str, reward_calls: list[int]) -> tuple[Path, int] | None:
    """The last complete checkpoint in ``out`` and its step (restoring the reward's call count), or None;
    drops any other."""
    pointer = CheckpointPointer(out)
    latest = pointer.latest()
    for leftover in (out / CHECKPOINT_DIRECTORIES[1]).glob("checkpoint-*"):  # a checkpoint a kill interrupted
        if latest is None or leftover.resolve() != latest.resolve():
            shutil.rmtree(leftover)
    if latest is None:
        return None
    state = json.loads((latest / CHECKPOINT_STATE).read_text())
    if state["identity"] != identity:
        raise UserError(f"{out} holds a checkpoint of a different training configuration; use a new --out")
    reward_calls[0] = state["reward_calls"]
    log.info("rl_rewriter: resuming from step %d (%s)", state["step"], latest)
    return latest, state["step"]


def _adapter_from(checkpoint: Path, adapter: Path) -> None:
    """The final checkpoint's adapter files (what ``save_model`` writes) into ``adapter``, replaced whole."""
    staging = adapter.with_name(f".{adapter.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(checkpoint, staging, ignore=lambda _, names: [n for n in names if n in _TRAINER_ONLY])
    if adapter.exists():
        shutil.rmtree(adapter)
    staging.rename(adapter)


def _summary(out: Path, steps: int, log_history: list[dict[str, Any]], settings: GRPOSettings) -> dict[str, Any]:
    history = [{k: v for k, v in row.items() if isinstance(v, int | float)} for row in log_history]
    rewards = [row["reward"] for row in history if "reward" in row]
    summary = {
        "adapter": str(out / "adapter"),
        "steps": steps,
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        "grpo_settings": asdict(settings),
        "log_history": history,
    }
    atomic_write_json(out / "grpo_history.json", summary)
    return summary


def _callbacks(out: Path, identity: str, reward_calls: list[int]) -> list[Any]:
    """Trainer callbacks: the checkpoint pointer after each complete checkpoint, and progress lines."""
    from transformers import TrainerCallback

    pointer = CheckpointPointer(out)

    class PointAtCheckpoint(TrainerCallback):  # the Trainer calls on_save once a checkpoint is fully written
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            record = {"identity": identity, "reward_calls": reward_calls[0], "step": state.global_step}
            atomic_write_json(directory / CHECKPOINT_STATE, record)
            pointer.commit(directory, step=state.global_step)

    class ReportProgress(TrainerCallback):
        report: Progress | None = None
        last_reward: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.report is None:  # by now a resumed Trainer has loaded its step
                self.report = Progress("rl_rewriter", state.max_steps, "GRPO steps", done=state.global_step)
                self.report.update(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if self.report is not None and logs and "reward" in logs:  # a step's log (logging_steps=1)
                self.last_reward = float(logs["reward"])
                self.report.update(state.global_step, last_reward=self.last_reward)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.report is not None:
                self.report.finish(state.global_step)

    return [PointAtCheckpoint(), ReportProgress()]


def train_rl_rewriter(
    tools: Tools,
    call_model: ModelCall,
    rewriter_location: str,
    train: list[Task],
    out: Path,
    settings: GRPOSettings,
    train_feedback: str = "visible",
) -> dict[str, Any]:
    """Train (or resume from ``out``'s last checkpoint); writes ``out/adapter`` and ``out/grpo_history.json``."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    check_training_tasks(train)
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(tools, train, settings, train_feedback)
    reward_calls = [0]
    resume = _resume_point(out, identity, reward_calls)
    if resume is not None and resume[1] >= settings.max_steps:
        # killed after its last checkpoint: that one holds the final adapter (resuming, the Trainer takes a step more)
        checkpoint = resume[0]
        _adapter_from(checkpoint, out / "adapter")
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        return _summary(out, state["global_step"], state["log_history"], settings)
    feedback = _first_feedback(tools, call_model, train, train_feedback)
    rows = []
    for task in train:
        request = rewrite_request(
            tools.config.rewrite_template, editable_parts(task).text, task.entry_point, feedback[task.task_id]
        )
        rows.append({"prompt": [{"role": "user", "content": request}], "task_id": task.task_id})
    dataset = Dataset.from_list(rows)
    args = GRPOConfig(
        output_dir=str(out / CHECKPOINT_DIRECTORIES[1]),
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
        save_strategy="steps",
        save_steps=settings.checkpoint_every,
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
        reward_funcs=make_reward(tools, call_model, {t.task_id: t for t in train}, train_feedback, reward_calls),
        args=args,
        train_dataset=dataset,
        peft_config=lora,
        callbacks=_callbacks(out, identity, reward_calls),
    )
    trainer.remove_callback(PrinterCallback)  # the per-step dicts are in grpo_history.json; progress lines instead
    trainer.train(resume_from_checkpoint=str(resume[0]) if resume is not None else None)
    trainer.save_model(str(out / "adapter"))
    return _summary(out, trainer.state.global_step, trainer.state.log_history, settings)


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
