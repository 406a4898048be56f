"""PPO training on the scripted models (a subprocess the resume test can SIGKILL): ppo_fake_train.py OUT DATA_DIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from strategy_fakes import FakeModels

from promis_repro.agent.ppo import PPOConfig, train_ppo
from promis_repro.data.pools import load_pool
from promis_repro.rewards import RewardConfig
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.config import StrategyConfig

CONFIG = PPOConfig(total_timesteps=48, n_steps=8, batch_size=8, eval_every=16)
PROGRAMS = ["def f():\n    return 0", "def add(a, b):\n    return a + b", "def g(x):\n    return x"]


def train(out: Path, data_dir: str, stop_after_updates: int | None = None) -> dict:
    train_tasks = load_pool("train_pool", data_dir)[:6]
    selection = load_pool("selection_pool", data_dir)[:2]
    models = FakeModels(PROGRAMS)
    tools = Tools(models.generator.spec, models.rewriter.spec, StrategyConfig(max_steps=5), RewardConfig(), seed=11)
    return train_ppo(tools, models.call, train_tasks, selection, out, CONFIG, stop_after_updates=stop_after_updates)


if __name__ == "__main__":
    result = train(Path(sys.argv[1]), sys.argv[2])
    (Path(sys.argv[1]) / "training.json").write_text(json.dumps({"ppo_config": {"embeddings": False}, **result}))
