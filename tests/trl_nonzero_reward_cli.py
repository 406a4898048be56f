"""``promis-repro ARGS`` with the TRL agents' code score replaced by a deterministic non-zero fake (a subprocess the
resume test can SIGKILL): trl_nonzero_reward_cli.py ARGS.

On the tiny model every real score is 0 (and self_correct_rl's KLs start at 0: its adapter starts as the identity),
so the advantages and the gradient are 0 and the adapter never moves; with this score (a function of the code
alone, so the same codes score the same in a resumed run) the group's rewards differ and training moves it.
rl_rewriter's two rewrites of a task often lead the greedy generator to the same code, so its fake reward is a
function of the rewrite too (the generator still runs, as in a real run). Selection (``self_correct_rl``) still
scores with the real tests.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Any

import promis_repro.agent.grpo as grpo
import promis_repro.agent.self_correct_rl as self_correct_rl
from promis_repro.cli import main


def fake_scorer(reward: Any, train_feedback: str) -> Callable[[dict[str, Any], Any, str], float]:
    def score(suites: dict[str, Any], task: Any, code: str) -> float:
        return (zlib.crc32(f"{task.task_id}\n{code}".encode()) % 1000) / 999

    return score


real_make_reward = grpo.make_reward


def fake_rewriter_reward(*args: Any, **kwargs: Any) -> Callable[..., list[float]]:
    reward = real_make_reward(*args, **kwargs)

    def scored(prompts: list[Any], completions: list[Any], task_id: list[str], **rest: Any) -> list[float]:
        scores = reward(prompts, completions, task_id, **rest)
        return [
            (zlib.crc32(f"{tid}\n{completion}\n{score}".encode()) % 1000) / 999
            for tid, completion, score in zip(task_id, completions, scores, strict=True)
        ]

    return scored


if __name__ == "__main__":
    grpo.code_scorer = self_correct_rl.code_scorer = fake_scorer
    grpo.make_reward = fake_rewriter_reward
    sys.exit(main())
