"""``self_correct_rl``: the GENERATOR fine-tuned (a LoRA adapter, TRL) to correct its own code in a second turn,
SCoRe / CoCoS style; at test time, ``self_correct``'s episode with exactly 2 turns, the adapter loaded.

Unlike every other strategy of the grid, this one changes the generator's weights: its row compares a
fine-tuned generator with the others' prompted one (the tables' label and the report say so).

**Episode** (one training example = one task of the decontaminated MBPP train pool; the prompts are
``self_correct``'s own, built by the same code: ``strategies/baselines.py``):

- turn 1: ``x1`` = the task prompt with its visible test, as ``self_correct`` builds it; ``y1 ~ pi_theta(.|x1)``;
- turn 2: ``x1, y1, i`` where ``i`` (the *instruction tokens*) is what ``follow_up_prompt``'s chat puts after
  the assistant's first answer: the end of that turn, ``SELF_CORRECT_INSTRUCTION`` ("There might be an error
  in the code above ... correct the error, if any ...") as the next user message, the assistant header;
  ``y2 ~ pi_theta(.|x1, y1, i)``. Each turn stops where it stops at test time (a closed code block, the stop
  strings, EOS, the strategy's ``max_new_tokens``).

**Reward** of an episode (``self_correction_reward``, ``formula``)::

    R = s(y2) - beta2 * KL2 - beta1 * KL1 + alpha * (s(y2) - s(y1))
    KL_k = sum over the tokens the policy generated in turn k of [log pi_theta(t | before) - log pi_ref(t | before)]

``s(y)`` = SoftPass of the code extracted from ``y`` on the task's held-out tests (``training_suites(task,
train_feedback)[1]``, as ``agent/grpo.py``'s reward: under ``--train-feedback all`` every test, under the
``multi`` reward kind the multi-level score M). ``pi_ref`` = the frozen base generator (the LoRA adapter
disabled: peft's ``disable_adapter()``). Log-probabilities at the sampling temperature (as TRL computes its
own), without gradient: a sequence-level estimate of KL(pi_theta || pi_ref) from the sampled tokens, the
KL-in-reward form of RLOO. The instruction tokens are not the policy's: they count in neither KL nor the
loss. The larger ``beta1`` keeps turn 1 close to the base model, as SCoRe constrains its first turn (its
stage I; its stage II also rewards turn 1, which this form, the issue's, does not) (defaults: beta1 = 0.1,
beta2 = 0.01, ours); ``alpha`` is CoCoS's improvement bonus (default 0: off). With alpha > 0 the bonus's
``-alpha * s(y1)`` rewards a worse first turn, held back only by ``beta1 * KL1``: keep beta1 large then.

**Optimisation**: TRL's GRPOTrainer with its experimental ``rollout_func`` (TRL 1.16's RLOOTrainer takes no
rollout function): ``TwoTurnRollout`` samples both turns with the trainer's model, ``num_generations``
episodes per task, and returns ``prompt_ids`` = x1, ``completion_ids`` = y1 + i + y2, ``env_mask`` = 1 on y1
and y2, 0 on i, the policy's ``logprobs``, and the scores and KLs, which TRL forwards to the reward function.
``beta = 0`` (the KL is in the reward, not in TRL's loss); ``scale_rewards = "none"``: the advantage is
``R_j - mean(R over the task's group)``, RLOO's leave-one-out advantage times (k-1)/k; ``loss_type =
"dr_grpo"``: the loss sums advantage x log-probability over the policy's tokens of both turns with a constant
normaliser, REINFORCE with RLOO's baseline up to a constant. One update per batch of episodes
(``num_iterations`` 1): on-policy, so PPO-style clipping never binds.

**Train and test prompts**: in training, turn 2 sees turn 1 as sampled (a policy gradient needs the sampled
tokens); ``self_correct`` at test time shows the code extracted from turn 1 in a ```python block. The two
are the same text whenever turn 1 is one ```python block, as the system prompt asks; the log's
``self_correct/turn2_prompt_as_at_test`` is the share of episodes where they are.

**Selection** on the selection pool, as PPO and LPO select theirs (``rl_rewriter`` keeps its final
adapter): the candidates are the adapter of every checkpoint (every ``checkpoint_every`` steps and the last
step) and the base generator (step 0, no adapter). Each runs the strategy as at test time on the selection
tasks (``self_correct_rl``'s episode: ``self_correct``'s 2 turns under the grid's ``visible`` feedback, the
strategy file's decoding settings, the run's seed and its derivation per call), with the adapter merged
over the generator by the test-time backend; its score is the mean SoftPass of each task's final (turn-2)
code on the task's hidden tests: PPO's selection metric (``evaluate_policy``), whatever ``train_feedback``.
The best wins, ties going to the earliest step; ``OUT/adapter`` is its adapter (when the base generator
wins: a no-op adapter, the history's ``base_model_selected``), ``OUT/final_adapter`` the last step's.
Candidates, the scores' record (a run killed while selecting resumes it), checkpoints, resume after SIGKILL,
progress lines and the adapter: ``agent/trl_agent.py``. Trainable: a causal chat (instruct) generator of the
transformers backend; the paper's CodeT5+ (seq2seq) is not.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promis_repro.agent.env import check_training_tasks
from promis_repro.agent.grpo import code_scorer
from promis_repro.agent.trl_agent import (
    Selection,
    TRLRun,
    TRLSettings,
    fine_tuning_problem,
    grpo_arguments,
    lora_config,
    release_memory,
    run_identity,
    train_with_trl,
    with_adapter,
)
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt
from promis_repro.generation.hf import StopOnText, render_prompt, stop_position
from promis_repro.generation.prompts import stop_strings
from promis_repro.generation.registry import ModelSpec
from promis_repro.strategies.actions import EpisodeContext, Tools
from promis_repro.strategies.baselines import SELF_CORRECT_INSTRUCTION, follow_up_prompt
from promis_repro.strategies.engine import ModelCall, drive
from promis_repro.strategies.feedback import FeedbackSuite, fixed_suite, public_view, training_suites
from promis_repro.strategies.prompt_parts import editable_parts

log = logging.getLogger(__name__)

METRIC = "self_correct/"  # prefix of this agent's own entries in the Trainer's log rows
SELECTION_METRIC = (
    "mean SoftPass, on each selection task's hidden tests, of the final (turn-2) code of the self_correct_rl "
    "strategy run as at test time (visible feedback); the base generator is step 0"
)


@dataclass(frozen=True)
class SelfCorrectRLSettings(TRLSettings):
    """The ``self_correct_rl:`` section: the shared TRL settings and the reward's coefficients.

    A turn's length is the strategy's ``max_new_tokens``, as at test time.
    """

    beta1: float = 0.1  # KL coefficient of turn 1 (SCoRe: the larger one)
    beta2: float = 0.01  # KL coefficient of turn 2
    alpha: float = 0.0  # CoCoS's improvement bonus alpha * (s(y2) - s(y1)); 0: off

    def check(self, where: str) -> None:
        super().check(where)
        for key in ("beta1", "beta2", "alpha"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}: {key} must be >= 0")


def self_correction_reward(
    score1: float, score2: float, kl1: float, kl2: float, *, beta1: float, beta2: float, alpha: float
) -> float:
    """R = s(y2) - beta2 * KL2 - beta1 * KL1 + alpha * (s(y2) - s(y1)) (the module's docstring)."""
    return score2 - beta2 * kl2 - beta1 * kl1 + alpha * (score2 - score1)


def formula(settings: SelfCorrectRLSettings, train_feedback: str = "visible", reward_kind: str = "shaped") -> str:
    """The reward and the advantage, with this run's coefficients (recorded in ``training.json``)."""
    tests = "every test of the task" if train_feedback == "all" else "the task's held-out tests"
    score = "the multi-level score M" if reward_kind == "multi" else "SoftPass"
    return (
        f"R = s(y2) - {settings.beta2:g}*KL2 - {settings.beta1:g}*KL1 + {settings.alpha:g}*(s(y2) - s(y1)); "
        f"s(y) = {score} of turn y's code on {tests}; KL_k = sum over turn k's generated tokens of "
        "[log pi_theta - log pi_ref] (pi_ref: the base generator, adapter disabled; at the sampling temperature; "
        "instruction tokens excluded); advantage = R - mean of R over the task's "
        f"{settings.num_generations} episodes (RLOO's leave-one-out advantage x (k-1)/k)"
    )


def turn_kls(policy: list[float], reference: list[float], layout: tuple[int, int, int]) -> tuple[float, float]:
    """(KL1, KL2) of one episode from its completion's per-token log-probs under the policy and the reference.

    ``layout``: the lengths of (turn 1, instruction tokens, turn 2) in the completion; the instruction's
    tokens are the environment's and count in neither.
    """
    first, instruction, second = layout
    ratios = [p - r for p, r in zip(policy, reference, strict=True)]
    if len(ratios) != first + instruction + second:
        raise ValueError(f"{len(ratios)} log-probs for a completion laid out as {layout}")
    return sum(ratios[:first]), sum(ratios[first + instruction :])


def completion_logprobs(
    model: Any, sequences: list[list[int]], starts: list[int], temperature: float, batch_size: int
) -> list[list[float]]:
    """log pi(token_t | tokens before t) at ``temperature`` for each token from ``starts[i]`` on (no gradient)."""
    import torch

    device = next(model.parameters()).device
    found: list[list[float]] = []
    for begin in range(0, len(sequences), batch_size):
        chunk = sequences[begin : begin + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.tensor([s + [0] * (width - len(s)) for s in chunk], device=device)  # right padding: causal
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in chunk], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float() / temperature
            chosen = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        for row, (sequence, start) in enumerate(zip(chunk, starts[begin : begin + batch_size], strict=True)):
            found.append(chosen[row, start - 1 : len(sequence) - 1].tolist())
    return found


def episode_kls(
    model: Any,
    sequences: list[list[int]],
    starts: list[int],
    layouts: list[tuple[int, int, int]],
    temperature: float,
    batch_size: int,
) -> tuple[list[list[float]], list[tuple[float, float]]]:
    """The policy's per-token log-probs of each completion and each episode's (KL1, KL2) against the reference:
    the same model with its adapter disabled (``model.disable_adapter()``, peft)."""
    policy = completion_logprobs(model, sequences, starts, temperature, batch_size)
    with model.disable_adapter():
        reference = completion_logprobs(model, sequences, starts, temperature, batch_size)
    return policy, [turn_kls(p, r, layout) for p, r, layout in zip(policy, reference, layouts, strict=True)]


class TwoTurnRollout:
    """TRL's ``rollout_func(prompts, trainer)``: both turns of ``self_correct`` for each prompt of the batch (the
    rendered turn-1 prompt; TRL repeats it ``num_generations`` times), sampled with the trainer's model."""

    def __init__(
        self,
        tools: Tools,
        tokenizer: Any,
        tasks: list[Task],
        settings: SelfCorrectRLSettings,
        train_feedback: str,
    ) -> None:
        self.tools, self.tokenizer, self.settings = tools, tokenizer, settings
        self.score = code_scorer(tools.reward, train_feedback)
        self.suites: dict[str, Any] = {}  # the reward suites, built once per task
        self.stop = stop_strings(tools.generator_spec)
        self.contexts: dict[str, EpisodeContext] = {}  # rendered turn-1 prompt -> the task's episode context
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            ctx = EpisodeContext(
                public_view(task),
                editable_parts(task),
                training_suites(task, train_feedback)[0],
                tools,
                "self_correct_rl",
            )
            prompt = self.render(ctx.model_prompt(ctx.parts.text))  # self_correct's first turn
            if prompt in self.contexts:
                log.info("self_correct_rl: %s has the same prompt as an earlier task; left out", task.task_id)
                continue
            self.contexts[prompt], self.tasks[prompt] = ctx, task

    def render(self, prompt: ChatPrompt) -> str:
        """The text the generator reads, exactly as the transformers backend renders it at test time."""
        return render_prompt(self.tokenizer, prompt, seq2seq=False)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _eos(self, model: Any) -> set[int]:
        configured = model.generation_config.eos_token_id
        eos = set(configured) if isinstance(configured, list) else {configured}
        return (eos | {self.tokenizer.eos_token_id}) - {None}

    def _cut(self, tokens: list[int], eos: set[int]) -> list[int]:
        """A turn's tokens up to where test-time decoding stops: EOS (kept: the policy chose it) or the token that
        completes a stop string or a closed code block."""
        text = ""
        for index, token in enumerate(tokens):
            if token in eos:
                return tokens[: index + 1]
            text += self.tokenizer.decode([token], skip_special_tokens=True)
            if stop_position(text, self.stop, close_fence=True) is not None:
                return tokens[: index + 1]
        return tokens

    def sample(self, model: Any, contexts: list[list[int]]) -> list[list[int]]:
        """One turn: a sample per context at the training temperature, cut where test-time decoding stops."""
        import torch
        from transformers import StoppingCriteriaList

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        device = next(model.parameters()).device
        width = max(len(c) for c in contexts)
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device)
        stopping = StoppingCriteriaList([StopOnText(self.tokenizer, width, self.stop, True)])
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=self.settings.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=self.tools.config.max_new_tokens,
                pad_token_id=pad,
                stopping_criteria=stopping,
            )
        eos = self._eos(model)
        return [self._cut(row.tolist(), eos) for row in output[:, width:]]

    def text(self, tokens: list[int]) -> str:
        """A turn's text as the test-time backend returns it (special tokens dropped, cut at a stop)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = stop_position(text, self.stop, close_fence=True)
        return text if cut is None else text[:cut]

    def instruction(self, prompt: str, ctx: EpisodeContext, turn1: list[int], code: str) -> tuple[list[int], bool]:
        """The instruction tokens after turn 1 (``follow_up_prompt``'s chat after the assistant's answer) and
        whether x1 + y1 + i reads as the test-time turn-2 prompt does."""
        second, _ = follow_up_prompt(ctx, code, SELF_CORRECT_INSTRUCTION)
        at_test = self.render(second)
        answer = second.messages[2][1]
        at = at_test.find(answer, len(prompt)) if at_test.startswith(prompt) else -1
        if at < 0:
            raise UserError(
                f"the chat template of {self.tools.generator_spec.name} does not extend the first turn's prompt; "
                "self_correct_rl cannot lay both turns out as one sequence"
            )
        tail = at_test[at + len(answer) :]
        eos = self.tokenizer.eos_token
        if turn1 and turn1[-1] == self.tokenizer.eos_token_id and eos and tail.startswith(eos):
            tail = tail[len(eos) :]  # turn 1 ended its answer itself
        as_at_test = prompt + self.tokenizer.decode(turn1) + tail == at_test
        return self.encode(tail), as_at_test

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        # as TRL generates: gradient checkpointing off meanwhile (it would turn off the KV cache)
        checkpointing = trainer.args.gradient_checkpointing_kwargs
        with unwrap_model_for_generation(
            trainer.model_wrapped, trainer.accelerator, gradient_checkpointing_kwargs=checkpointing
        ) as model:
            episodes = self.episodes(model, prompts)
        self._log(trainer, episodes)
        return episodes

    def episodes(self, model: Any, prompts: list[str]) -> dict[str, Any]:
        """Both turns for each prompt with ``model`` (a peft model: its adapter off is the reference), scored;
        the fields TRL wants (``prompt_ids``, ``completion_ids``, ``env_mask``, ``logprobs``) and the reward's."""
        contexts = [self.encode(prompt) for prompt in prompts]
        training = model.training
        model.eval()  # no dropout while sampling and measuring the KL
        try:
            turn1 = self.sample(model, contexts)
            texts1 = [self.text(tokens) for tokens in turn1]
            codes1 = [self.contexts[p].extract(t) for p, t in zip(prompts, texts1, strict=True)]
            pieces = [
                self.instruction(p, self.contexts[p], t, c) for p, t, c in zip(prompts, turn1, codes1, strict=True)
            ]
            turn2 = self.sample(model, [c + t + i for c, t, (i, _) in zip(contexts, turn1, pieces, strict=True)])
            completions = [t1 + i + t2 for t1, (i, _), t2 in zip(turn1, pieces, turn2, strict=True)]
            layouts = [(len(t1), len(i), len(t2)) for t1, (i, _), t2 in zip(turn1, pieces, turn2, strict=True)]
            policy, kls = episode_kls(
                model,
                [c + completion for c, completion in zip(contexts, completions, strict=True)],
                [len(c) for c in contexts],
                layouts,
                self.settings.temperature,
                self.settings.per_device_train_batch_size,
            )
        finally:
            model.train(training)
        scores1, scores2 = [], []
        for prompt, code1, tokens in zip(prompts, codes1, turn2, strict=True):
            task, ctx = self.tasks[prompt], self.contexts[prompt]
            scores1.append(self.score(self.suites, task, code1))
            scores2.append(self.score(self.suites, task, ctx.extract(self.text(tokens))))
        return {
            "prompt_ids": contexts,
            "completion_ids": completions,
            "env_mask": [[1] * a + [0] * b + [1] * c for a, b, c in layouts],
            "logprobs": policy,
            "score1": scores1,
            "score2": scores2,
            "kl1": [kl1 for kl1, _ in kls],
            "kl2": [kl2 for _, kl2 in kls],
            "turn2_prompt_as_at_test": [float(as_at_test) for _, as_at_test in pieces],
        }

    @staticmethod
    def _log(trainer: Any, episodes: dict[str, Any]) -> None:
        """Means over the step's episodes into the Trainer's next log row (and so its log history)."""
        names = {"score1": "score_turn1", "score2": "score_turn2", "kl1": "kl_turn1", "kl2": "kl_turn2"}
        for key in (*names, "turn2_prompt_as_at_test"):
            values = episodes[key]
            trainer._metrics["train"][METRIC + names.get(key, key)].append(sum(values) / len(values))


def make_reward(settings: SelfCorrectRLSettings) -> Any:
    """``reward(prompts, completions, score1, score2, kl1, kl2, **_)``: ``self_correction_reward`` per episode,
    from the fields ``TwoTurnRollout`` returned."""

    def self_correction(
        prompts: list[Any],
        completions: list[Any],
        score1: list[float],
        score2: list[float],
        kl1: list[float],
        kl2: list[float],
        **_: Any,
    ) -> list[float]:
        coefficients = {"beta1": settings.beta1, "beta2": settings.beta2, "alpha": settings.alpha}
        return [
            self_correction_reward(s1, s2, k1, k2, **coefficients)
            for s1, s2, k1, k2 in zip(score1, score2, kl1, kl2, strict=True)
        ]

    return self_correction


def selection_score(tools: Tools, call_model: ModelCall, tasks: list[Task]) -> dict[str, float]:
    """The ``self_correct_rl`` strategy on ``tasks`` as ``run`` runs it (``strategies/runner.py``) under
    ``visible`` feedback, with ``tools``' generator: mean SoftPass and pass rate of the final codes on the
    tasks' hidden tests (what PPO's selection measures)."""
    from promis_repro.strategies.registry import get_strategy

    function = get_strategy("self_correct_rl").make_episode(None)  # its episode needs nothing of training
    episodes, ledgers = {}, {}
    for index, task in enumerate(tasks):
        suite, position = fixed_suite(task, "visible"), index / len(tasks)
        ctx = EpisodeContext(public_view(task), editable_parts(task), suite, tools, "self_correct_rl", position)
        episodes[task.task_id], ledgers[task.task_id] = function(ctx), ctx.ledger
    results = drive(episodes, call_model, ledgers, tools.budget)
    scored = [FeedbackSuite(t, "train", t.hidden_tests).evaluate(results[t.task_id].final_code) for t in tasks]
    return {
        "soft_pass": sum(result.soft for result in scored) / len(scored),
        "pass_rate": sum(result.passed for result in scored) / len(scored),
    }


def selection(tools: Tools, tasks: list[Task], batch_size: int) -> Selection:
    """How ``train_with_trl`` scores a candidate adapter (None: the base generator) on the selection ``tasks``:
    the test-time backend with the adapter merged, loaded for that candidate alone."""
    from promis_repro.strategies.runner import Models

    check_training_tasks(tasks)
    if not tasks:
        raise UserError("self_correct_rl selects its adapter on the selection pool, but it has no task")

    def score(adapter: Path | None) -> dict[str, float]:
        spec = tools.generator_spec if adapter is None else with_adapter(tools.generator_spec, adapter)
        models = Models(spec.name, None, generator_spec=spec, batch_size=batch_size)
        candidate = Tools(spec, None, tools.config, tools.reward, tools.seed)
        try:
            return selection_score(candidate, models.call, tasks)
        finally:
            del models  # the next candidate loads its own
            release_memory()

    return Selection(score, [t.task_id for t in tasks], SELECTION_METRIC)


def check_trainable(spec: ModelSpec) -> None:
    """Only a causal chat model of the transformers backend: TRL trains causal LMs, the two turns are a chat."""
    problem = fine_tuning_problem(spec)
    if problem:
        raise UserError(f"self_correct_rl fine-tunes the generator, but {problem}")


def train_self_correct_rl(
    tools: Tools,
    location: str,
    revision: str | None,
    train: list[Task],
    selection_tasks: list[Task],
    out: Path,
    settings: SelfCorrectRLSettings,
    train_feedback: str = "visible",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Train the generator's adapter (or resume from ``out``'s last checkpoint), select it on
    ``selection_tasks``; writes ``out/adapter`` (the selected), ``out/final_adapter`` and
    ``out/self_correct_rl_history.json``. ``location``/``revision``: the generator's weights
    (``weights_location``); ``batch_size``: the test-time backend's, for the selection runs."""
    check_trainable(tools.generator_spec)
    check_training_tasks(train)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16; we know
    identity = run_identity("self_correct_rl", settings, tools, train, train_feedback)
    run = TRLRun(
        "self_correct_rl",
        "training steps",
        out,
        identity,
        settings,
        "self_correct_rl_history.json",
        selection=selection(tools, selection_tasks, batch_size),
    )
    run.summary |= {
        "fine_tunes": "generator",
        "settings": asdict(settings),
        "formula": formula(settings, train_feedback, tools.reward.kind),
    }

    def make_trainer(callbacks: list[Any]) -> Any:
        from datasets import Dataset
        from transformers import AutoTokenizer
        from trl import GRPOTrainer

        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, padding_side="left")
        rollout = TwoTurnRollout(tools, tokenizer, train, settings, train_feedback)
        rows = [{"prompt": prompt, "task_id": task.task_id} for prompt, task in rollout.tasks.items()]
        args = grpo_arguments(
            run,
            tools.seed,
            beta=0.0,
            scale_rewards="none",
            loss_type="dr_grpo",
            # dr_grpo's constant normaliser: the longest possible completion (two turns)
            max_completion_length=2 * tools.config.max_new_tokens,
            model_init_kwargs={"revision": revision} if revision else None,
        )
        return GRPOTrainer(
            model=location,
            reward_funcs=make_reward(settings),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=callbacks,
            rollout_func=rollout,
        )

    return train_with_trl(run, make_trainer)
