"""Draft tokens for greedy rows, looked up in the row's own prompt and text (prompt lookup decoding).

Code completions copy much of their context: the function's signature and
names, the docstring's examples, their own earlier lines. A row whose last
few tokens occurred before proposes the tokens that followed them then; the
decode step scores the drafts as extra inputs of that row, and the model's
greedy choices keep the drafts it agrees with (``decoding.decode``). Because
a decode step computes each input exactly as it would alone (row-aligned
attention, row-padded products), the kept tokens are the ones plain greedy
decoding writes: drafts change how many steps a text takes, never the text.
Drafts are not free: each is one more input of the step's matrix products
and attention, which cost about as much per input at any batch size on a
CPU (~3.2 ms for SmolLM2-135M on 2 AVX2 cores, against ~33 ms a step
whatever its size). So drafts only fill steps of fewer than
``DRAFT_INPUTS`` inputs (``decode`` gives the free inputs to its rows in
turn: a row alone may draft 15 tokens), which is where the long completions spend their
last steps (``bench/RESULTS.md``: 32 MBPP+ prompts, 255 steps -> 183, 5 %
less time; filling every step up to 32 inputs took 154 steps but 34 % more
inputs, no faster).
"""

from __future__ import annotations

#: the longest and shortest suffix looked up
LONGEST, SHORTEST = 4, 2
#: drafts fill a decode step up to this many inputs (rows and drafts)
DRAFT_INPUTS = 16


class NgramDrafter:
    """The context of one row (its prompt, then its tokens as they come) and where each n-gram last occurred."""

    def __init__(self, prompt: list[int]) -> None:
        self.tokens = list(prompt)
        # seen[n][gram]: the position just past gram's latest occurrence that something followed
        self.seen: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(SHORTEST, LONGEST + 1)}
        self.indexed = 0  # positions below this have had the n-grams ending there recorded

    def extend(self, tokens: list[int]) -> None:
        """Append the row's new tokens."""
        self.tokens.extend(tokens)

    def draft(self, most: int) -> list[int]:
        """Up to ``most`` tokens that followed the latest earlier occurrence of the longest matching suffix."""
        tokens = self.tokens
        # an n-gram ending at ``end`` is recorded once the token after it exists (so never the suffix itself)
        for end in range(max(self.indexed, 1), len(tokens)):
            for n, seen in self.seen.items():
                if end >= n:
                    seen[tuple(tokens[end - n : end])] = end
        self.indexed = len(tokens)
        if most <= 0:
            return []
        for n in range(LONGEST, SHORTEST - 1, -1):
            if len(tokens) >= n:
                start = self.seen[n].get(tuple(tokens[-n:]))
                if start is not None:
                    return tokens[start : start + most]
        return []
