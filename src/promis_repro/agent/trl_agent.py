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

**Selection** (an agent whose ``TRLRun.selection`` is set: ``self_correct_rl``; ``rl_rewriter`` keeps its
final adapter): every checkpoint's adapter is a candidate, copied to ``OUT/trainer/candidates/step-N`` before
the pointer names the checkpoint, and the base model (step 0, no adapter) is one too. Once training is done
each candidate is scored on the selection pool (``Selection.score``), the scores kept in
``OUT/trainer/selection.json`` as they come (with the selection tasks and each adapter's sha256, so a run
killed while selecting scores only the rest when rerun); the best score wins, ties going to the earliest step
(the least trained). ``OUT/adapter`` is the winner's adapter; when the base model wins, the last step's
adapter with every LoRA B matrix zeroed (B·A = 0: merged over the base model it changes no weight, so the
test-time loader needs no special case). ``OUT/final_adapter`` is the last step's adapter, whichever wins.
The candidates go with the checkpoints (``discard_checkpoints``).
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
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CANDIDATES = "candidates"  # under OUT/trainer: each checkpoint's adapter, a selection candidate (``step-N``)
SELECTION_SCORES = "selection.json"  # under OUT/trainer: the candidates' selection scores so far
BASE_STEP = 0  # the base model's candidate: no adapter (no training step)


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


@dataclass(frozen=True)
class Selection:
    """How an agent picks its adapter on the selection pool (the module's docstring).

    ``score(adapter)``: a candidate's scores, ``{"soft_pass": mean, ...}`` (``soft_pass`` decides), where
    ``adapter`` is the candidate's adapter directory or None for the base model; ``task_ids``: the selection
    tasks (scores recorded for other tasks are not reused); ``metric``: what ``soft_pass`` is (recorded).
    """

    score: Callable[[Path | None], dict[str, float]]
    task_ids: list[str]
    metric: str


@dataclass
class TRLRun:
    """One agent's training run: its name and step unit (progress lines), where it writes, what a checkpoint
    must match (``identity``), its call count (``[n]``, restored on resume), what its history file adds and,
    for an agent that selects its adapter, how (``selection``; None: the final adapter is kept)."""

    agent: str
    unit: str
    out: Path
    identity: str
    settings: TRLSettings
    history_file: str
    calls: list[int] = field(default_factory=lambda: [0])
    summary: dict[str, Any] = field(default_factory=dict)
    selection: Selection | None = None


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


def _adapter_from(checkpoint: Path, adapter: Path, zero_b: bool = False) -> None:
    """A checkpoint's adapter files (what ``save_model`` writes) into ``adapter``, replaced whole; ``zero_b``:
    with every LoRA B matrix zeroed (``no_op_weights``)."""
    staging = adapter.with_name(f".{adapter.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(checkpoint, staging, ignore=lambda _, names: [n for n in names if n in _TRAINER_ONLY])
    if zero_b:
        no_op_weights(staging / ADAPTER_WEIGHTS)
    if adapter.exists():
        shutil.rmtree(adapter)
    staging.rename(adapter)


def no_op_weights(weights: Path) -> None:
    """Zero every LoRA B matrix of an adapter's weights file, in place: the update B·A is then 0, so the
    adapter merged over its base model leaves every weight as it was."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    lora_b = [name for name in tensors if ".lora_B." in name or ".lora_embedding_B." in name]
    if not lora_b:
        raise RuntimeError(f"{weights} holds no LoRA B matrix to zero")
    for name in lora_b:
        tensors[name] = torch.zeros_like(tensors[name])
    save_file(tensors, weights, metadata={"format": "pt"})


class Candidates:
    """``OUT/trainer/candidates/step-N``: each checkpoint's adapter; ``OUT/trainer/selection.json``: the
    selection scores so far, ``{"task_ids": [...], "scores": {"N": {"step", "adapter_sha256", "soft_pass", ...}}}``."""

    def __init__(self, out: Path) -> None:
        self.directory = out / CHECKPOINT_DIRECTORIES[1] / CANDIDATES
        self.scores_file = out / CHECKPOINT_DIRECTORIES[1] / SELECTION_SCORES

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step}"

    def steps(self) -> list[int]:
        """The steps of the complete candidates, in order (a copy a kill interrupted is a ``.step-N.partial``)."""
        if not self.directory.exists():
            return []
        return sorted(int(p.name.split("-")[1]) for p in self.directory.glob("step-*") if p.is_dir())

    def add(self, step: int, checkpoint: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _adapter_from(checkpoint, self.path(step))

    def keep_until(self, step: int) -> None:
        """Drop the candidates after ``step`` (the checkpoint a rerun resumes from: it trains them again) and any
        copy a kill interrupted; ``step`` 0 (no checkpoint: a fresh start) drops the scores too."""
        for leftover in self.directory.glob(".step-*.partial") if self.directory.exists() else []:
            shutil.rmtree(leftover)
        for later in [s for s in self.steps() if s > step]:
            shutil.rmtree(self.path(later))
        if step == BASE_STEP:
            self.scores_file.unlink(missing_ok=True)

    def scores(self, task_ids: list[str]) -> dict[int, dict[str, Any]]:
        """The scores recorded on these selection tasks, by step."""
        if not self.scores_file.exists():
            return {}
        recorded = json.loads(self.scores_file.read_text())
        if recorded["task_ids"] != task_ids:
            return {}
        return {int(step): record for step, record in recorded["scores"].items()}

    def record(self, task_ids: list[str], scores: dict[int, dict[str, Any]]) -> None:
        value = {"task_ids": task_ids, "scores": {str(step): scores[step] for step in sorted(scores)}}
        atomic_write_json(self.scores_file, value)


def select_adapter(run: TRLRun, steps: int) -> dict[str, Any]:
    """Score the base model and every candidate on the selection pool (those already scored in
    ``selection.json`` are not scored again), keep the best as ``OUT/adapter`` and the last step's as
    ``OUT/final_adapter``; returns what the history and ``training.json`` record of the selection."""
    selection = run.selection
    if selection is None:
        raise ValueError(f"{run.agent} selects no adapter")
    candidates = Candidates(run.out)
    kept = candidates.steps()
    if not kept or kept[-1] != steps:
        last = kept[-1] if kept else None
        raise RuntimeError(f"{run.agent}: the last candidate adapter is of step {last}, not of the last step {steps}")
    scores = candidates.scores(selection.task_ids)
    report = Progress(f"{run.agent} selection", len(kept) + 1, "candidates")
    report.update(0)
    for done, step in enumerate([BASE_STEP, *kept], start=1):
        adapter = None if step == BASE_STEP else candidates.path(step)
        digest = None if adapter is None else sha256_of(adapter / ADAPTER_WEIGHTS)
        if step not in scores or scores[step]["adapter_sha256"] != digest:
            scores[step] = {"step": step, "adapter_sha256": digest, **selection.score(adapter)}
            candidates.record(selection.task_ids, scores)
        report.update(done, step=step, soft_pass=round(scores[step]["soft_pass"], 4))
    report.finish()
    ranked = [scores[step] for step in [BASE_STEP, *kept]]
    best = max(ranked, key=lambda record: (record["soft_pass"], -record["step"]))  # ties: the earliest step
    final = candidates.path(kept[-1])
    _adapter_from(final, run.out / "final_adapter")
    if best["step"] == BASE_STEP:
        _adapter_from(final, run.out / "adapter", zero_b=True)
    else:
        _adapter_from(candidates.path(best["step"]), run.out / "adapter")
    log.info("%s: selected step %d (selection SoftPass %.4f)", run.agent, best["step"], best["soft_pass"])
    return {
        "metric": selection.metric,
        "n_tasks": len(selection.task_ids),
        "candidates": ranked,
        "selected_step": best["step"],
        # the base model won: OUT/adapter is a no-op adapter (its LoRA B matrices zero)
        "base_model_selected": best["step"] == BASE_STEP,
        "selection_soft_pass": best["soft_pass"],
    }


def _summary(run: TRLRun, steps: int, log_history: list[dict[str, Any]]) -> dict[str, Any]:
    history = [{k: v for k, v in row.items() if isinstance(v, int | float)} for row in log_history]
    rewards = [row["reward"] for row in history if "reward" in row]
    summary = {
        "adapter": str(run.out / "adapter"),
        **({"final_adapter": str(run.out / "final_adapter")} if run.selection is not None else {}),
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
            if run.selection is not None:  # a selection candidate, kept before the pointer names the checkpoint
                Candidates(run.out).add(state.global_step, directory)
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
    if run.selection is not None:
        Candidates(run.out).keep_until(BASE_STEP if resume is None else resume[1])
    if resume is not None and resume[1] >= run.settings.max_steps:
        # killed after its last checkpoint: that one holds the final adapter (resuming, the Trainer takes a step more)
        checkpoint = resume[0]
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        steps, log_history = state["global_step"], state["log_history"]
        if run.selection is None:
            _adapter_from(checkpoint, run.out / "adapter")
    else:
        trainer = make_trainer(_callbacks(run))
        trainer.remove_callback(PrinterCallback)  # the per-step dicts are in the history file; progress lines instead
        trainer.train(resume_from_checkpoint=str(resume[0]) if resume is not None else None)
        steps, log_history = trainer.state.global_step, trainer.state.log_history
        if run.selection is None:
            trainer.save_model(str(run.out / "adapter"))
        del trainer
        release_memory()  # selection loads the model again, once per candidate
    if run.selection is not None:
        run.summary["selection"] = select_adapter(run, steps)
    return _summary(run, steps, log_history)


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    if not (adapter / ADAPTER_WEIGHTS).exists():
        raise UserError(f"no trained adapter in {directory}; train it: promis-repro train --agent {agent}")
    return adapter


def adapter_spec(base: ModelSpec, directory: str | Path, agent: str = "rl_rewriter") -> ModelSpec:
    """The model with a trained adapter: its identity (cache keys, provenance) includes the adapter's hash."""
    return with_adapter(base, adapter_directory(directory, agent))


def with_adapter(base: ModelSpec, adapter: Path) -> ModelSpec:
    """``base`` with the LoRA adapter in directory ``adapter`` merged over it (``generation/hf.py``); its weights
    are ``base``'s (``base_model``: a GGUF model is converted once for both)."""
    digest = sha256_of(adapter / ADAPTER_WEIGHTS)
    extra = {**base.extra, "adapter": str(adapter), "adapter_sha256": digest, "base_model": base.name}
    return replace(base, name=f"{base.name}+rl", extra=extra)
