"""PPO training (stable-baselines3) on the prompt environment, resumable, and the ``ppo`` strategy.

Defaults are the paper's hyper-parameters: learning rate 3e-4, gamma 0.99, clip 0.2, 4 epochs,
value coefficient 0.5, entropy coefficient 0.01, gradient-norm clip 0.5; ``gae_lambda`` 1.0 gives
the public code's Monte-Carlo returns; actor and critic are 128-128-64 tanh MLPs (the public code's
128-128 trunk with 64-unit heads). Training sees only the decontaminated MBPP train pool; every
``eval_every`` timesteps the policy is rolled out on the selection pool and the best one is kept.

Checkpoints are taken after every PPO update (a rollout boundary): the SB3 model (policy, optimizer,
timestep counter, last observation), the environment's state and the torch/numpy/python random
states, written into a fresh directory that a pointer file then names atomically. A killed run
restarted with the same arguments resumes there and ends where an uninterrupted run would.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.agent.checkpoints import CHECKPOINT_DIRECTORIES, CheckpointPointer
from promis_repro.agent.env import PromptEnv, check_training_tasks
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.io import atomic_write_text
from promis_repro.progress import Progress
from promis_repro.provenance import config_hash
from promis_repro.strategies.actions import EpisodeContext, Tools
from promis_repro.strategies.engine import ModelCall, derive_seed, drive
from promis_repro.strategies.feedback import FeedbackSuite, public_view, training_suites, without_visible_tests
from promis_repro.strategies.policy import OBSERVATION_KINDS, TrainedPolicy, policy_episode
from promis_repro.strategies.prompt_parts import editable_parts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PPOConfig:
    total_timesteps: int = 10_000  # the public code: 1000 episodes x 10 steps
    n_steps: int = 128  # rollout length per update
    batch_size: int = 64  # minibatch size of each epoch
    n_epochs: int = 4  # the paper's 4 epochs per update
    learning_rate: float = 3e-4  # the paper's Adam learning rate
    gamma: float = 0.99  # the paper's discount
    gae_lambda: float = 1.0  # 1.0: the public code's Monte-Carlo returns
    clip_range: float = 0.2  # the paper's PPO clip
    vf_coef: float = 0.5  # the paper's value-loss coefficient
    ent_coef: float = 0.01  # the paper's entropy bonus
    max_grad_norm: float = 0.5  # the paper's gradient-norm clip
    net_arch: tuple[int, ...] = (128, 128, 64)  # the public code's 128-128 trunk and 64-unit heads
    embeddings: bool = False  # MiniLM vectors of prompt and feedback after the 10 features
    eval_every: int = 1_000  # timesteps between selection-pool evaluations
    # the task feature of the observation: "visible" (ours) or the public code's "position" (strategies/policy.py)
    observation: str = "visible"
    # "separate": actor and critic each a 128-128-64 tanh MLP; "shared": the public code's actor-critic,
    # one 128-128 tanh trunk with a 64-unit head each
    policy: str = "separate"
    # True (the paper's protocol): the step limit is a true end of episode, no bootstrapping at truncation
    truncation_is_terminal: bool = False
    # share of training episodes presented without a visible test; None: as many as the evaluated benchmarks have
    no_visible_fraction: float | None = None

    def check(self, where: str) -> None:
        if self.n_steps < 2 or self.total_timesteps < 1 or self.batch_size < 2:
            raise UserError(f"{where}: n_steps and batch_size must be >= 2, total_timesteps >= 1")
        if self.observation not in OBSERVATION_KINDS:
            raise UserError(f"{where}: observation must be one of {', '.join(OBSERVATION_KINDS)}")
        if self.policy not in ("separate", "shared"):
            raise UserError(f"{where}: policy must be separate or shared")
        if self.policy == "shared" and len(self.net_arch) < 2:
            raise UserError(f"{where}: policy shared needs net_arch of a trunk and a head size, e.g. [128, 128, 64]")
        if self.no_visible_fraction is not None and not 0 <= self.no_visible_fraction <= 1:
            raise UserError(f"{where}: no_visible_fraction must be within [0, 1]")


# -- rollouts with a trained policy (selection evaluation and the test-time strategy) -------------------


def evaluate_policy(
    trained: TrainedPolicy,
    tasks: list[Task],
    tools: Tools,
    call_model: ModelCall,
    train_feedback: str = "visible",
    no_visible_fraction: float = 0.0,
) -> dict:
    """SoftPass and pass rate of the policy's answers on selection-pool tasks.

    ``visible``: the policy gets feedback from each task's visible test only, as at test time (the same
    share of tasks as in training comes without one), and its answer is scored on all of the task's
    tests; ``all``: feedback and score from all of them.
    """
    check_training_tasks(tasks)
    function = policy_episode(trained)
    episodes, ledgers = {}, {}
    for index, task in enumerate(tasks):
        draw = np.random.default_rng(derive_seed(tools.seed, "selection-presentation", task.task_id)).random()
        show_visible = draw >= no_visible_fraction
        suite, _ = training_suites(task, train_feedback, show_visible)
        presented = task if show_visible or train_feedback == "all" else without_visible_tests(task)
        parts = editable_parts(presented)
        ctx = EpisodeContext(public_view(presented), parts, suite, tools, "ppo-selection", index / len(tasks))
        episodes[task.task_id], ledgers[task.task_id] = function(ctx), ctx.ledger
    results = drive(episodes, call_model, ledgers, tools.budget)
    finals = [results[t.task_id] for t in tasks]
    if train_feedback == "all":
        scores = [(r.final_fitness or 0.0, (r.final_fitness or 0.0) >= 1.0) for r in finals]
    else:
        hidden = [FeedbackSuite(t, "train", t.hidden_tests).evaluate(r.final_code) for t, r in zip(tasks, finals)]
        scores = [(result.soft, result.passed) for result in hidden]
    actions = [s["action"] for r in finals for s in r.steps]
    return {
        "soft_pass": float(np.mean([soft for soft, _ in scores])),
        "pass_rate": float(np.mean([passed for _, passed in scores])),
        "action_counts": [actions.count(a) for a in range(3)],
    }


# -- training -------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        atomic_write_text(path, "")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


class _Checkpoints:
    """``checkpoints/NNNNNN/`` (SB3 model zip, the rest in ``state.pt``) behind ``checkpoint.json``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pointer = CheckpointPointer(out)

    def save(self, update: int, model: Any, extra: dict[str, Any]) -> None:
        import torch

        directory = self.pointer.fresh(self.out / CHECKPOINT_DIRECTORIES[0] / f"{update:06d}")
        model.save(directory / "model.zip")
        torch.save(extra, directory / "state.pt")
        self.pointer.commit(directory, update=update)

    def load(self) -> tuple[Path, dict[str, Any]] | None:
        import torch

        directory = self.pointer.latest()
        if directory is None:
            return None
        return directory / "model.zip", torch.load(directory / "state.pt", weights_only=False)


def new_ppo_model(venv: Any, config: PPOConfig, seed: int) -> Any:
    """stable-baselines3 PPO with the paper's hyper-parameters and its 128-128-64 tanh actor and critic."""
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy",
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        vf_coef=config.vf_coef,
        ent_coef=config.ent_coef,
        max_grad_norm=config.max_grad_norm,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs=_policy_kwargs(config),
    )


def _keep_logs_in_memory(model: Any) -> None:
    """Give the model a logger without outputs (its values stay readable in ``name_to_value``).

    Otherwise every ``learn`` call configures SB3's default logger, which creates an empty
    ``$TMPDIR/SB3-<time>`` directory even with nothing to write: one per update. A loaded model
    forgets a custom logger, so this runs after loading too.
    """
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))


def _policy_kwargs(config: PPOConfig) -> dict[str, Any]:
    import torch

    if config.policy == "shared":  # the public code's actor-critic: shared trunk, one head each
        from promis_repro.agent.networks import SharedTrunk

        *trunk, head = config.net_arch
        return {
            "features_extractor_class": SharedTrunk,
            "features_extractor_kwargs": {"sizes": tuple(trunk)},
            "share_features_extractor": True,
            "net_arch": {"pi": [head], "vf": [head]},
            "activation_fn": torch.nn.Tanh,
        }
    return {"net_arch": {"pi": list(config.net_arch), "vf": list(config.net_arch)}, "activation_fn": torch.nn.Tanh}


def train_ppo(
    tools: Tools,
    call_model: ModelCall,
    train: list[Task],
    selection: list[Task],
    out: Path,
    config: PPOConfig,
    *,
    train_feedback: str = "visible",
    stop_after_updates: int | None = None,
) -> dict[str, Any]:
    """Train (or resume); returns the training summary. ``stop_after_updates`` ends this call early (tests).

    ``train_feedback``: what the policy sees and what the reward counts (``agent/env.py``); the selection
    evaluation follows it too. ``config.no_visible_fraction`` must be resolved (a number) here.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    check_training_tasks(train)
    check_training_tasks(selection)
    out.mkdir(parents=True, exist_ok=True)
    seed = tools.seed
    identity = config_hash(
        {
            "ppo": asdict(config),
            "train_feedback": train_feedback,
            "seed": seed,
            "train": [t.task_id for t in train],
            "selection": [t.task_id for t in selection],
            "strategy": tools.config.as_dict(),
            "reward": tools.reward.as_dict(),
            # the weights (a relocked model is another run)
            "generator": tools.generator_spec.identity(),
            "rewriter": tools.rewriter_spec.identity() if tools.rewriter_spec else None,
        }
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = PromptEnv(
        train,
        tools,
        call_model,
        train_feedback=train_feedback,
        no_visible_fraction=config.no_visible_fraction or 0.0,
        embeddings=config.embeddings,
        observation=config.observation,
        truncation_is_terminal=config.truncation_is_terminal,
    )
    venv = DummyVecEnv([lambda: env])
    checkpoints = _Checkpoints(out)
    saved = checkpoints.load()
    history: dict[str, Any] = {"evaluations": [], "updates": [], "best": None}
    if saved is not None:
        model_path, state = saved
        if state["identity"] != identity:
            raise UserError(f"{out} holds a checkpoint of a different training configuration; use a new --out")
        # force_reset=False: keep the saved last observation; the environment resumes mid-episode
        model = PPO.load(model_path, env=venv, device="cpu", force_reset=False)
        env.set_state(state["env"])
        history = state["history"]
        _set_rng_state(state["rng"])
        log.info("ppo: resumed at %d timesteps", model.num_timesteps)
    else:
        model = new_ppo_model(venv, config, seed)
    _keep_logs_in_memory(model)
    selection_tools = Tools(
        tools.generator_spec, tools.rewriter_spec, tools.config, tools.reward, seed, _mutator=tools._mutator
    )
    report = Progress("ppo", config.total_timesteps, "timesteps", done=model.num_timesteps)
    report.update(model.num_timesteps, **_progress_details(history))
    updates_now = 0
    while model.num_timesteps < config.total_timesteps:
        if stop_after_updates is not None and updates_now >= stop_after_updates:
            return {"complete": False, "timesteps": model.num_timesteps}
        before = model.num_timesteps
        model.learn(total_timesteps=config.n_steps, reset_num_timesteps=False)
        updates_now += 1
        values = {k: float(v) for k, v in model.logger.name_to_value.items() if k.startswith("train/")}
        history["updates"].append(
            {
                "update": len(history["updates"]) + 1,
                "timesteps": model.num_timesteps,
                **{k.split("/", 1)[1]: round(v, 6) for k, v in values.items()},
            }
        )
        crossed = model.num_timesteps // config.eval_every > before // config.eval_every
        if crossed or model.num_timesteps >= config.total_timesteps:
            trained = TrainedPolicy(model.policy, config.embeddings, config.observation)
            result = evaluate_policy(
                trained, selection, selection_tools, call_model, train_feedback, config.no_visible_fraction or 0.0
            )
            history["evaluations"].append({"timesteps": model.num_timesteps, **result})
            best = history["best"]
            if best is None or result["soft_pass"] > best["soft_pass"]:
                history["best"] = {"timesteps": model.num_timesteps, **result}
                model.save(out / "best_policy.zip")
        checkpoints.save(
            len(history["updates"]),
            model,
            {"identity": identity, "env": env.get_state(), "history": history, "rng": _rng_state()},
        )
        _write_curves(out, env, history)
        report.update(model.num_timesteps, **_progress_details(history))
    report.finish()
    model.save(out / "policy.zip")
    _write_curves(out, env, history)
    return {
        "complete": True,
        "timesteps": model.num_timesteps,
        "best": history["best"],
        "evaluations": history["evaluations"],
        "episodes": len(env.finished),
    }


def _progress_details(history: dict[str, Any]) -> dict[str, Any]:
    """The progress line's details: updates, the last selection evaluation and the best so far."""
    last = history["evaluations"][-1] if history["evaluations"] else None
    best = history["best"]
    return {
        "updates": len(history["updates"]),
        "last_eval": f"{last['soft_pass']:.4f} SoftPass at {last['timesteps']}" if last else None,
        "best": f"{best['soft_pass']:.4f}" if best else None,
    }


def _write_curves(out: Path, env: PromptEnv, history: dict[str, Any]) -> None:
    episodes = [dict(row) for row in env.finished]
    window: list[dict[str, Any]] = []
    for row in episodes:
        window = [*window[-19:], row]
        row["mean_return_20"] = round(float(np.mean([r["return"] for r in window])), 6)
        row["pass_rate_20"] = round(float(np.mean([r["passed"] for r in window])), 6)
    _write_csv(out / "curves.csv", episodes)
    _write_csv(out / "updates.csv", history["updates"])
    _write_csv(
        out / "evaluations.csv",
        [
            {k: v for k, v in e.items() if k != "action_counts"}
            | {f"action_{i}": n for i, n in enumerate(e["action_counts"])}
            for e in history["evaluations"]
        ],
    )


def load_policy(directory: str | Path) -> TrainedPolicy:
    """The best policy of a training run (else its final one), with whether it observes embeddings."""
    from stable_baselines3 import PPO

    directory = Path(directory)
    summary = directory / "training.json"
    path = directory / "best_policy.zip"
    if not path.exists():
        path = directory / "policy.zip"
    if not path.exists() or not summary.exists():
        raise UserError(
            f"no trained ppo policy in {directory}; train it: promis-repro train --agent ppo --out {directory}"
        )
    ppo_config = json.loads(summary.read_text())["ppo_config"]
    # policies trained before the observation kind was recorded observed the public code's position
    observation = ppo_config.get("observation", "position")
    return TrainedPolicy(PPO.load(path, device="cpu").policy, bool(ppo_config["embeddings"]), observation)
