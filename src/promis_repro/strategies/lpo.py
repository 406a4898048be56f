"""``lpo``: an iterative LLM prompt optimiser over one shared instruction (in the style of LPO/OPRO).

Training (``optimize_instruction``), on the decontaminated MBPP train pool only:
for each batch of ``batch_size`` train tasks, the generator writes code from
instruction + task; a "debugger" prompt to the rewriter LLM analyses the
failures; an "optimizer" prompt rewrites the instruction from that analysis.
Every ``eval_every`` batches the current instruction is scored on the selection
pool (mean SoftPass of direct generation) and the best one is kept. The state
(instruction, best, history, next batch) is checkpointed after every batch;
a rerun resumes from it. At test time ``lpo`` is direct generation with the
best instruction put before the task description.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json
from promis_repro.provenance import config_hash
from promis_repro.strategies.actions import SINGLE, EpisodeContext, Tools
from promis_repro.strategies.engine import Episode, ModelCall, derive_seed, drive
from promis_repro.strategies.feedback import FeedbackSuite
from promis_repro.strategies.prompt_parts import PromptParts, editable_parts

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "initial_instruction": "Write a correct, complete Python function that solves the task.",
    "batch_size": 4,
    "epochs": 1,
    "eval_every": 2,
    "max_batches": None,
    "max_failures_shown": 3,
}
DEBUGGER_TEMPLATE = (
    "A code model was given this instruction before each programming task:\n{instruction}\n\n"
    "It failed these tasks:\n{failures}\n\n"
    "In a few sentences, explain what the instruction should tell the model so that it avoids these mistakes. "
    "Do not write code."
)
OPTIMIZER_TEMPLATE = (
    "Improve this instruction for a code model:\n{instruction}\n\nAnalysis of its failures:\n{analysis}\n\n"
    "Write an improved instruction of at most three sentences that helps on any programming task, not only "
    'these ones, and contains no code. Start your answer with "Here is the improved instruction:".'
)
PREFIX = "Here is the improved instruction:"


@dataclass(frozen=True)
class InstructedParts(PromptParts):
    """A task's prompt parts with a shared instruction put before the description."""

    instruction: str = ""

    @classmethod
    def wrap(cls, parts: PromptParts, instruction: str) -> InstructedParts:
        return cls(parts.head, parts.text, parts.tail, parts.indent, instruction)

    def compose(self, text: str) -> str:
        return super().compose(f"{self.instruction}\n{text}" if self.instruction else text)


def lpo_settings(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(DEFAULTS) - {"instruction_file"}
    if unknown:
        raise UserError(f"lpo settings: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    return DEFAULTS | config


def parse_instruction(output: str) -> str | None:
    position = output.lower().find(PREFIX.lower())
    if position < 0:
        return None
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", output[position + len(PREFIX) :].strip()) if p.strip()]
    if not paragraphs:
        return None
    text = paragraphs[0].strip().strip('"')
    if "```" in text or re.search(r"^\s*(def |class |import |return )", text, re.M) or len(text) > 800:
        return None
    return text if len(text.split()) >= 3 else None


def _direct_with(instruction: str):
    def episode(ctx: EpisodeContext) -> Episode:
        candidate = yield from ctx.code(ctx.parts.text)
        ctx.log(0, candidate, instruction=instruction)
        return ctx.finish(candidate)

    return episode


def run_instruction(
    tools: Tools,
    call_model: ModelCall,
    tasks: list[Task],
    instruction: str,
    label: str,
    train_feedback: str = "visible",
) -> list[dict[str, Any]]:
    """Direct generation with ``instruction`` on training-side tasks.

    Each row's step carries the feedback the optimiser may read (``visible``: the task's visible test
    only, as a user at test time would have; ``all``: every test of the task) and ``score``, the
    SoftPass on all of the task's tests (what selection compares).
    """
    from promis_repro.strategies.feedback import public_view, training_suites

    episodes, ledgers = {}, {}
    episode = _direct_with(instruction)
    for task in tasks:
        suite, _ = training_suites(task, train_feedback)
        ctx = EpisodeContext(
            public_view(task), InstructedParts.wrap(editable_parts(task), instruction), suite, tools, f"lpo-{label}"
        )
        episodes[task.task_id], ledgers[task.task_id] = episode(ctx), ctx.ledger
    results = drive(episodes, call_model, ledgers, tools.budget)
    rows = []
    for task in tasks:
        step = results[task.task_id].steps[-1]
        score = FeedbackSuite(task, "train", task.hidden_tests).evaluate(step["code"]).soft
        rows.append({"task": task, "step": step, "score": score, "ledger": ledgers[task.task_id]})
    return rows


def _charge(state: dict[str, Any], role: str, calls: int, tokens: int, seconds: float) -> None:
    """Training cost in the checkpointed state, so a resumed run reports the whole run's cost."""
    cost = state.setdefault("cost", {"generator_calls": 0, "rewriter_calls": 0, "tokens": 0, "model_seconds": 0.0})
    cost[f"{role}_calls"] += calls
    cost["tokens"] += tokens
    cost["model_seconds"] = round(cost["model_seconds"] + seconds, 4)


def _charge_rows(state: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        ledger = row["ledger"].as_dict()
        _charge(state, "generator", ledger["generator_calls"], ledger["tokens"], sum(ledger["model_seconds"].values()))


def _ask(call_model: ModelCall, tools: Tools, text: str, seed: int, state: dict[str, Any]) -> str:
    from dataclasses import replace

    from promis_repro.generation.base import ChatPrompt

    settings = replace(tools.rewriter_settings(), seed=seed)
    completion = call_model("rewriter", [ChatPrompt(messages=(("user", text),))], settings)[0]
    _charge(state, "rewriter", 1, completion.prompt_tokens + completion.completion_tokens, completion.seconds)
    return completion.text


def optimize_instruction(
    tools: Tools,
    call_model: ModelCall,
    train: list[Task],
    selection: list[Task],
    out: Path,
    *,
    settings: dict[str, Any] | None = None,
    stop_after: int | None = None,
    train_feedback: str = "visible",
) -> dict[str, Any]:
    """Run (or resume) the optimisation; ``stop_after`` ends this call after that many new batches (tests).

    ``train_feedback``: what the debugger reads of a failure (``visible``: the visible test's result only);
    selection always scores the instruction's answers on every test of the selection pool's tasks.
    """
    cfg = lpo_settings(settings or {})
    if tools.rewriter_spec is None:
        raise UserError("lpo needs a rewriter model (--rewriter) for its debugger and optimizer prompts")
    state_path = out / "lpo_state.json"
    identity = config_hash(
        {"models": [tools.generator_spec.identity(), tools.rewriter_spec.identity()]}
        | {
            "cfg": cfg,
            "seed": tools.seed,
            "train": [t.task_id for t in train],
            "selection": [t.task_id for t in selection],
            "strategy": tools.config.as_dict(),
            "train_feedback": train_feedback,
        }
    )
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("identity") != identity:
            raise UserError(f"{state_path} was written by a different lpo configuration; remove it to start over")
        log.info("lpo: resuming at batch %d", state["next_batch"])
    else:
        state = {
            "identity": identity,
            "instruction": cfg["initial_instruction"],
            "best_instruction": None,
            "best_score": None,
            "next_batch": 0,
            "history": [],
            "evaluations": [],
        }
    rng = np.random.default_rng(tools.seed)
    order = [int(i) for _ in range(cfg["epochs"]) for i in rng.permutation(len(train))]
    batches = [order[i : i + cfg["batch_size"]] for i in range(0, len(order), cfg["batch_size"])]
    if cfg["max_batches"] is not None:
        batches = batches[: cfg["max_batches"]]

    def evaluate(index: int) -> None:
        rows = run_instruction(tools, call_model, selection, state["instruction"], "selection", train_feedback)
        _charge_rows(state, rows)
        score = float(np.mean([r["score"] for r in rows])) if rows else 0.0
        passed = float(np.mean([r["score"] >= 1.0 for r in rows])) if rows else 0.0
        state["evaluations"].append(
            {"after_batch": index, "instruction": state["instruction"], "soft_pass": score, "pass_rate": passed}
        )
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["best_instruction"] = score, state["instruction"]

    if state["next_batch"] == 0 and not state["evaluations"]:
        evaluate(-1)  # the initial instruction is a candidate too
        atomic_write_json(state_path, state)
    for done_now, index in enumerate(range(state["next_batch"], len(batches))):
        if stop_after is not None and done_now >= stop_after:
            break
        tasks = [train[i] for i in batches[index]]
        rows = run_instruction(tools, call_model, tasks, state["instruction"], "train", train_feedback)
        _charge_rows(state, rows)
        failures = [r for r in rows if not r["step"]["feedback"]["passed"]][: cfg["max_failures_shown"]]
        entry: dict[str, Any] = {
            "batch": index,
            "instruction": state["instruction"],
            "pass_rate": float(np.mean([r["step"]["feedback"]["passed"] for r in rows])),
        }
        if failures:
            shown = "\n\n".join(
                f"Task: {r['task'].description or r['task'].prompt}\nCode:\n{r['step']['code']}\n"
                f"Test results: {r['step']['feedback']['text']}"
                for r in failures
            )
            debug = DEBUGGER_TEMPLATE.format(instruction=state["instruction"], failures=shown)
            analysis = _ask(call_model, tools, debug, derive_seed(tools.seed, "lpo-debug", index), state)
            optimize = OPTIMIZER_TEMPLATE.format(instruction=state["instruction"], analysis=analysis)
            proposal = _ask(call_model, tools, optimize, derive_seed(tools.seed, "lpo-optimize", index), state)
            new = parse_instruction(proposal)
            entry.update(analysis=analysis, proposal=proposal, accepted=new is not None)
            if new is not None:
                state["instruction"] = new
        state["history"].append(entry)
        state["next_batch"] = index + 1
        if (index + 1) % cfg["eval_every"] == 0 or index + 1 == len(batches):
            evaluate(index)
        atomic_write_json(state_path, state)
    state["complete"] = state["next_batch"] >= len(batches)
    atomic_write_json(state_path, state)
    return state


def load_instruction(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        path = path / "lpo_state.json"
    if not path.exists():
        raise UserError(f"lpo instruction {path} does not exist; train it first: promis-repro train --agent lpo ...")
    state = json.loads(path.read_text())
    if not state.get("complete"):
        raise UserError(f"{path}: lpo training has not finished (next batch {state.get('next_batch')})")
    return state["best_instruction"] or state["instruction"]


def lpo_episode(instruction: str):
    def episode(ctx: EpisodeContext) -> Episode:
        ctx.parts = InstructedParts.wrap(ctx.parts, instruction)
        candidate = yield from ctx.code(ctx.parts.text)
        ctx.log(0, candidate, instruction=instruction)
        return ctx.finish(candidate, stop=SINGLE)

    return episode
