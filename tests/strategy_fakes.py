"""A scripted stand-in for the generator and rewriter, for fast protocol tests (no model weights)."""

from __future__ import annotations

import re
import zlib

from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.registry import get_model


class _Side:
    def __init__(self, name: str) -> None:
        self.spec = get_model(name)
        self.model_id = {"name": name, "fake": "yes"}
        self.batch_independent = True  # answers are a pure function of the prompt


class FakeModels:
    """Code answers cycle through ``programs``; rewrites follow the contract and name the function."""

    def __init__(self, programs: list[str], rewriter: bool = True) -> None:
        self.generator = _Side("smollm2-135m-instruct")
        self.rewriter = _Side("smollm2-135m-instruct") if rewriter else None
        self.programs = programs
        self.calls: list[tuple[str, str]] = []
        self.batches = 0  # calls of ``call``: one per batch

    def call(
        self, role: str, prompts: list[ChatPrompt], settings: DecodingSettings | list[DecodingSettings]
    ) -> list[Completion]:
        out = []
        self.batches += 1
        for prompt in prompts:
            text = prompt.key()
            self.calls.append((role, text))
            if role == "rewriter":
                match = re.search(r"Function name: (\w+)", text)
                name = match.group(1) if match else "f"
                answer = f"Here is the rewritten prompt: Write a Python function {name} that solves the task exactly."
                if "improved instruction" in text:
                    answer = (
                        f"Here is the improved instruction: Think step by step, variant {zlib.crc32(text.encode())}."
                    )
            elif "test cases" in text:
                answer = "```python\nassert add(1, 2) == 3\nassert add(2, 2) == 4\n```"
            else:
                # a pure function of the prompt, like a cached model: reruns see the same answers
                answer = f"```python\n{self.programs[zlib.crc32(text.encode()) % len(self.programs)]}\n```"
            out.append(Completion(answer, 10, 10, 0.01))
        return out
