"""The public code's actor-critic trunk for stable-baselines3 (``ppo: {policy: shared}``, the paper protocol).

A module of its own so that saved policies name it by import path, and so that importing the agent
does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


class SharedTrunk(BaseFeaturesExtractor):
    """Tanh layers shared by actor and critic (the public code's 128-128 trunk); each head follows it."""

    def __init__(self, observation_space: Any, sizes: tuple[int, ...] = (128, 128)) -> None:
        super().__init__(observation_space, features_dim=sizes[-1])
        layers: list[torch.nn.Module] = [torch.nn.Flatten()]
        width = int(np.prod(observation_space.shape))
        for size in sizes:
            layers += [torch.nn.Linear(width, size), torch.nn.Tanh()]
            width = size
        self.trunk = torch.nn.Sequential(*layers)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.trunk(observations)
