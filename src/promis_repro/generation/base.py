"""The generator interface: a batch of prompts in, completions out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DecodingSettings:
    """Greedy when ``temperature == 0``; otherwise seeded sampling (same seed, same output)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False
    finish_reason: str = "length"  # "stop" | "length" | "eos"
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChatPrompt:
    """What a generator receives: chat messages for instruct models, raw text for completion models."""

    messages: tuple[tuple[str, str], ...] = ()  # (role, content)
    text: str = ""

    def key(self) -> str:
        """The full prompt text as it identifies a cache entry."""
        if self.messages:
            return "\n".join(f"<|{role}|>\n{content}" for role, content in self.messages)
        return self.text


class Generator(Protocol):
    model_id: dict[str, str]

    def generate(
        self, prompts: list[ChatPrompt], settings: DecodingSettings | list[DecodingSettings]
    ) -> list[Completion]: ...
