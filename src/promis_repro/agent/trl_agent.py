"""What the TRL-trained agents share: settings, LoRA, the GRPOTrainer's arguments, checkpoints, progress, the adapter.

``rl_rewriter`` (``agent/grpo.py``) fine-tunes the rewriter, ``self_correct_rl`` (``agent/self_correct_rl.py``)
the generator; both with TRL's GRPOTrainer and a LoRA adapter (peft), saved to ``OUT/adapter`` and, at test
time, loaded over the base model (``adapter_spec``).

Checkpoints every ``checkpoint_every`` steps and at the end: the Trainer's own (adapter weights,
optimizer, scheduler, step and log history, torch/numpy/python random states) in
``OUT/trainer/checkpoint-N``, plus ``promis_state.json`` (the run's identity and a call count the run's
sampling depends on: rl_rewriter's reward calls seed the frozen generator); ``OUT/checkpoint.json``
names the last complete one atomically (``agent/checkpoints.py``). A killed run restarted with the same
arguments resumes there; one killed after its last checkpoint takes its adapter from it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from promis_repro.agent.checkpoints import CHECKPOINT_DIRECTORIES, CheckpointPointer
from promis_repro.errors import UserError
from promis_repro.generation.registry import ModelSpec
from promis_repro.io import atomic_write_json, sha256_of
from promis_repro.progress import Progress
from promis_repro.provenance import config_hash

log = logging.getLogger(__name__)

CHECKPOINT_STATE = "promis_state.json"  # in each checkpoint: the run's identity and its call count
# what a checkpoint holds besides the adapter's files (``save_model``'s)
_TRAINER_ONLY = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", CHECKPOINT_STATE}


@dataclass(frozen=True)
class TRLSettings:
    """The settings every TRL agent has (its own section of the strategy file adds the rest)."""

    max_steps: int = 200  # optimizer steps
    learning_rate: float = 1e-5  # for the LoRA adapter
    num_generations: int = 4  # completions sampled per prompt (the group whose mean is the baseline)
    per_device_train_batch_size: int = 4  # TRL: the global batch must be a multiple of num_generations
    gradient_accumulation_steps: int = 1
    temperature: float = 0.9  # sampling temperature of the completions
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scale numerator (alpha / r)
    lora_dropout: float = 0.05
    checkpoint_every: int = 10  # steps between checkpoints (one is also taken at the end)

    def check(self, where: str) -> None:
        if self.checkpoint_every < 1:
            raise UserError(f"{where}: checkpoint_every must be >= 1")


def run_identity(section: str, settings: TRLSettings, tools: Any, train: list[Any], train_feedback: str) -> str:
    """What a checkpoint must match to be resumed (how often checkpoints are taken may change); ``section``:
    the settings' section of the strategy file, ``tools``: ``strategies.actions.Tools``."""
    values = asdict(settings)
    del values["checkpoint_every"]
    return config_hash(
        {
            section: values,
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


@dataclass
class TRLRun:
    """One agent's training run: its name and step unit (progress lines), where it writes, what a checkpoint
    must match (``identity``), its call count (``[n]``, restored on resume) and what its history file adds."""

    agent: str
    unit: str
    out: Path
    identity: str
    settings: TRLSettings
    history_file: str
    calls: list[int] = field(default_factory=lambda: [0])
    summary: dict[str, Any] = field(default_factory=dict)


def resume_point(out: Path, identity: str, calls: list[int], agent: str) -> tuple[Path, int] | None:
    """The last complete checkpoint in ``out`` and its step (restoring the call count), or None; drops any other."""
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
    calls[0] = state["reward_calls"]
    log.info("%s: resuming from step %d (%s)", agent, state["step"], latest)
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


def _summary(run: TRLRun, steps: int, log_history: list[dict[str, Any]]) -> dict[str, Any]:
    history = [{k: v for k, v in row.items() if isinstance(v, int | float)} for row in log_history]
    rewards = [row["reward"] for row in history if "reward" in row]
    summary = {
        "adapter": str(run.out / "adapter"),
        "steps": steps,
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        **run.summary,
        "log_history": history,
    }
    atomic_write_json(run.out / run.history_file, summary)
    return summary


def _callbacks(run: TRLRun) -> list[Any]:
    """Trainer callbacks: the checkpoint pointer after each complete checkpoint, and progress lines."""
    from transformers import TrainerCallback

    pointer = CheckpointPointer(run.out)

    class PointAtCheckpoint(TrainerCallback):  # the Trainer calls on_save once a checkpoint is fully written
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            record = {"identity": run.identity, "reward_calls": run.calls[0], "step": state.global_step}
            atomic_write_json(directory / CHECKPOINT_STATE, record)
            pointer.commit(directory, step=state.global_step)

    class ReportProgress(TrainerCallback):
        report: Progress | None = None
        last_reward: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.report is None:  # by now a resumed Trainer has loaded its step
                self.report = Progress(run.agent, state.max_steps, run.unit, done=state.global_step)
                self.report.update(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if self.report is not None and logs and "reward" in logs:  # a step's log (logging_steps=1)
                self.last_reward = float(logs["reward"])
                self.report.update(state.global_step, last_reward=self.last_reward)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.report is not None:
                self.report.finish(state.global_step)

    return [PointAtCheckpoint(), ReportProgress()]


def lora_config(settings: TRLSettings) -> Any:
    """The LoRA adapter trained over every linear layer of the model."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules="all-linear",
    )


def grpo_arguments(run: TRLRun, seed: int, **specific: Any) -> Any:
    """TRL's GRPOConfig: the shared settings (checkpoints into ``OUT/trainer``, a log row per step) and ``specific``."""
    from trl import GRPOConfig

    settings = run.settings
    return GRPOConfig(
        output_dir=str(run.out / CHECKPOINT_DIRECTORIES[1]),
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        num_generations=settings.num_generations,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        temperature=settings.temperature,
        seed=seed,
        use_cpu=not _cuda(),
        bf16=False,
        report_to="none",
        save_strategy="steps",
        save_steps=settings.checkpoint_every,
        logging_steps=1,
        disable_tqdm=True,
        **specific,
    )


def train_with_trl(run: TRLRun, make_trainer: Callable[[list[Any]], Any]) -> dict[str, Any]:
    """Train with the Trainer ``make_trainer(callbacks)`` builds (or resume from ``run.out``'s last checkpoint);
    writes ``OUT/adapter`` and the history file, and returns the summary."""
    from transformers.trainer_callback import PrinterCallback

    run.out.mkdir(parents=True, exist_ok=True)
    resume = resume_point(run.out, run.identity, run.calls, run.agent)
    if resume is not None and resume[1] >= run.settings.max_steps:
        # killed after its last checkpoint: that one holds the final adapter (resuming, the Trainer takes a step more)
        checkpoint = resume[0]
        _adapter_from(checkpoint, run.out / "adapter")
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        return _summary(run, state["global_step"], state["log_history"])
    trainer = make_trainer(_callbacks(run))
    trainer.remove_callback(PrinterCallback)  # the per-step dicts are in the history file; progress lines instead
    trainer.train(resume_from_checkpoint=str(resume[0]) if resume is not None else None)
    trainer.save_model(str(run.out / "adapter"))
    return _summary(run, trainer.state.global_step, trainer.state.log_history)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def fine_tuning_problem(spec: ModelSpec) -> str | None:
    """Why the TRL agents cannot fine-tune ``spec`` as a chat model (TRL trains causal LMs of transformers; the
    adapter is loaded by the transformers backend), or None."""
    if spec.backend != "transformers-causal" or spec.prompt_format != "instruct":
        return f"{spec.name} is {spec.backend} with {spec.prompt_format} prompts, not a causal instruct model"
    return None


def adapter_directory(directory: str | Path, agent: str = "rl_rewriter") -> Path:
    """The adapter a ``train --agent AGENT`` run wrote into ``directory``; a one-line error if there is none."""
    adapter = Path(directory) / "adapter"
    if not (adapter / "adapter_model.safetensors").exists():
        raise UserError(f"no trained adapter in {directory}; train it: promis-repro train --agent {agent}")
    return adapter


def adapter_spec(base: ModelSpec, directory: str | Path, agent: str = "rl_rewriter") -> ModelSpec:
    """The model with a trained adapter: its identity (cache keys, provenance) includes the adapter's hash."""
    adapter = adapter_directory(directory, agent)
    digest = sha256_of(adapter / "adapter_model.safetensors")
    return replace(
        base, name=f"{base.name}+rl", extra={**base.extra, "adapter": str(adapter), "adapter_sha256": digest}
    )
