"""Agent cost on the tiny model: seconds per environment step (by action, cold and warm cache) and per PPO update.

SmolLM2-135M-Instruct as generator and rewriter, MBPP train-pool tasks, in one run:
  1. ``--steps`` environment steps with actions cycling 0, 1, 2 (cold generation cache);
  2. the same steps again on a fresh environment (warm cache: what a resumed or repeated run pays);
  3. PPO (the paper's hyper-parameters) for ``--updates`` updates of ``--n-steps`` steps: the time of the
     update itself (gradient epochs) is the learn() time minus the time spent inside env.step.

    .venv/bin/python bench/agent_step.py [--steps 12] [--n-steps 8] [--updates 2] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--n-steps", type=int, default=8)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="promis-bench-")  # removed when main returns
    os.environ.setdefault("PROMIS_REPRO_CACHE", scratch.name)

    from stable_baselines3.common.vec_env import DummyVecEnv

    from promis_repro.agent.env import PromptEnv
    from promis_repro.agent.ppo import PPOConfig, new_ppo_model
    from promis_repro.data.pools import load_pool
    from promis_repro.rewards import RewardConfig
    from promis_repro.strategies.actions import Tools
    from promis_repro.strategies.config import StrategyConfig
    from promis_repro.strategies.runner import Models

    tasks = load_pool("train_pool", args.data_dir)[:8]
    models = Models("smollm2-135m-instruct", "smollm2-135m-instruct", batch_size=8)
    config = StrategyConfig(max_new_tokens=args.max_new_tokens, rewriter_max_new_tokens=args.max_new_tokens)
    tools = Tools(models.generator.spec, models.rewriter.spec, config, RewardConfig(), seed=0)
    models.generator.backend  # noqa: B018 - load weights before timing
    tools.mutator  # noqa: B018 - load WordNet and the embedder before timing

    def run_steps(label: str) -> dict[int, list[float]]:
        env = PromptEnv(tasks, tools, models.call)
        env.reset(options={"task_index": 0})
        times: dict[int, list[float]] = {0: [], 1: [], 2: []}
        for i in range(args.steps):
            action = i % 3
            started = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            times[action].append(time.perf_counter() - started)
            if terminated or truncated:
                env.reset()
        flat = [t for ts in times.values() for t in ts]
        by_action = ", ".join(f"action {a}: {statistics.mean(ts):.2f}" for a, ts in times.items() if ts)
        print(f"{label}: {statistics.mean(flat):.2f} s per environment step ({by_action})")
        return times

    cold = run_steps("cold cache")
    warm = run_steps("warm cache")
    cold_mean = statistics.mean(t for ts in cold.values() for t in ts)
    warm_mean = statistics.mean(t for ts in warm.values() for t in ts)
    print(f"warm / cold step time: {warm_mean / cold_mean:.3f}")

    ppo = PPOConfig(n_steps=args.n_steps, batch_size=args.n_steps)
    env = PromptEnv(tasks, tools, models.call)
    in_env = [0.0]
    original_step = env.step

    def timed_step(action):
        started = time.perf_counter()
        result = original_step(action)
        in_env[0] += time.perf_counter() - started
        return result

    env.step = timed_step  # type: ignore[method-assign]
    model = new_ppo_model(DummyVecEnv([lambda: env]), ppo, seed=0)  # the network training uses
    update_times, env_times = [], []
    for _ in range(args.updates):
        in_env[0] = 0.0
        started = time.perf_counter()
        model.learn(total_timesteps=ppo.n_steps, reset_num_timesteps=False)
        total = time.perf_counter() - started
        update_times.append(total - in_env[0])
        env_times.append(in_env[0])
        print(
            f"PPO update: {total:.2f} s in all, {in_env[0]:.2f} s in {ppo.n_steps} env steps, "
            f"{total - in_env[0]:.3f} s for the update itself"
        )
    share = sum(update_times) / (sum(update_times) + sum(env_times))
    print(
        f"mean PPO update (without env steps): {statistics.mean(update_times):.3f} s; "
        f"share of training time in the updates: {share:.3%}"
    )


if __name__ == "__main__":
    main()
