"""What ``promis-repro train --agent NAME`` wrote, loaded for the strategy of the same name (``--trained DIR``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from promis_repro import grid
from promis_repro.agent.ppo import load_policy
from promis_repro.agent.trl_agent import adapter_directory
from promis_repro.errors import UserError
from promis_repro.strategies.lpo import load_instruction

#: lpo: the best instruction; ppo: the best policy; rl_rewriter, self_correct_rl: the LoRA adapter's directory
LOADERS: dict[str, Callable[[str | os.PathLike[str]], Any]] = {
    "ppo": load_policy,
    "lpo": load_instruction,
    "rl_rewriter": adapter_directory,
    "self_correct_rl": lambda directory: adapter_directory(directory, "self_correct_rl"),
}
if tuple(LOADERS) != grid.AGENTS:  # every agent of the grid, and only those, has a loader
    raise RuntimeError(f"trained-output loaders {tuple(LOADERS)} differ from grid.AGENTS {grid.AGENTS}")


def load_trained(agent: str, directory: str | os.PathLike[str] | None) -> Any:
    if agent not in LOADERS:
        raise UserError(f"unknown agent {agent!r}; known: {', '.join(LOADERS)}")
    if not directory:
        raise UserError(f"strategy {agent} needs what promis-repro train --agent {agent} wrote: --trained DIR")
    return LOADERS[agent](directory)
