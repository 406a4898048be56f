"""Action 1: EPiC's genetic lexical mutation of a task description.

For each variant, every eligible word of the description is replaced with
probability ``p`` by a WordNet synonym of the same part of speech, drawn from
the ``top_k`` synonyms nearest to the word. Eligible: nouns, verbs, adjectives
and adverbs that are not stop words, proper nouns or identifiers. Variants
whose sentence embedding is less similar to the original than ``threshold``
are dropped; the first surviving variant is the mutation (EPiC keeps the
first of three). EPiC ranks synonyms by FastText similarity; we rank them by
all-MiniLM-L6-v2, the embedder the rest of the harness uses.

Never touched: code (fenced blocks, inline backticks, lines that look like
code, ``>>>`` examples, asserts), quoted strings, identifiers (names with ``_``,
digits or inner capitals, names followed by ``(``, and every name of the
task's function, parameters and shown tests).
"""

from __future__ import annotations

import functools
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promis_repro.data.task import AssertTests, Task
from promis_repro.embedding import embed
from promis_repro.grid import HUMANEVAL_FAMILY
from promis_repro.strategies.wordnet import load_tagger, load_wordnet, wordnet_pos

WORD = re.compile(r"[A-Za-z]+")
#: regions never mutated, wherever they appear in the text
PROTECTED = re.compile(
    r"```.*?(```|\Z)"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|\"[^\"\n]*\"|(?<![A-Za-z])'[^'\n]*'(?![A-Za-z])"  # quoted strings (not apostrophes)
    r"|\$[^$\n]*\$"  # TeX (APPS statements)
    r"|https?://\S+",
    re.DOTALL,
)
CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|assert\b|def\b|class\b|import\b|from\b|return\b|print\(|@|#|[\[{(])")


def _stop_words() -> frozenset[str]:
    # scikit-learn's English list (it comes with sentence-transformers); NLTK's
    # stopwords corpus needs a download this harness does not rely on
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def task_identifiers(task: Task) -> set[str]:
    """Names from the task's code: function, parameters, names in shown asserts and starter code."""
    sources = [task.starter_code]
    if isinstance(task.visible_tests, AssertTests):
        sources.extend(task.visible_tests.asserts)
    if task.benchmark in HUMANEVAL_FAMILY:
        sources.append(task.prompt)
    names = {task.entry_point} if task.entry_point else set()
    for source in sources:
        try:
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                if token.type == tokenize.NAME:
                    names.add(token.string)
        except (tokenize.TokenError, SyntaxError, IndentationError):
            names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    return {n for n in names if n}


def _is_identifier_like(word: str, text: str, end: int) -> bool:
    inner_capital = any(c.isupper() for c in word[1:]) and not word.isupper()
    followed = text[end : end + 1]
    return inner_capital or followed in ("(", "_") or text[end - len(word) - 1 : end - len(word)] in ("_", ".")


@dataclass
class MutationResult:
    text: str
    changed: bool
    variants: list[str] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    replacements: list[list[tuple[str, str]]] = field(default_factory=list)
    tagger: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "variants": self.variants,
            "similarities": [round(s, 4) for s in self.similarities],
            "replacements": self.replacements,
            "tagger": self.tagger,
        }


class LexicalMutator:
    def __init__(
        self,
        *,
        probability: float = 0.25,
        n_variants: int = 3,
        threshold: float = 0.8,
        top_k: int = 10,
        embedder: str = "all-minilm-l6-v2",
    ) -> None:
        self.probability = probability
        self.n_variants = n_variants
        self.threshold = threshold
        self.top_k = top_k
        self.embedder = embedder
        self.wordnet, self.wordnet_source = load_wordnet()
        self.tagger = load_tagger()
        self.stop_words = _stop_words()

    def eligible(self, text: str, protected_names: set[str]) -> list[tuple[int, int, str, str]]:
        """``(start, end, word, wordnet_pos)`` for every word that may be replaced."""
        blocked = np.zeros(len(text) + 1, dtype=bool)
        for match in PROTECTED.finditer(text):
            blocked[match.start() : match.end()] = True
        offset = 0
        for line in text.split("\n"):
            # code lines, and short lines full of code-like syntax (``f(x) -> y``, ``a[i] == b``)
            codeish = re.search(r"[=<>]=|->|\w\(.*\)|\[.*\]", line) and len(WORD.findall(line)) < 4
            if CODE_LINE.match(line) or codeish:
                blocked[offset : offset + len(line)] = True
            offset += len(line) + 1
        words = [m for m in WORD.finditer(text) if not blocked[m.start()]]
        starts = [m.start() == 0 or re.search(r"[.!?:\n]\s*$", text[: m.start()]) is not None for m in words]
        tags = self.tagger.tag([m.group() for m in words], starts) if words else []
        lowered_names = {n.lower() for n in protected_names}
        result = []
        for match, tag in zip(words, tags, strict=True):
            word = match.group()
            pos = wordnet_pos(tag)
            adjacent = text[match.end() : match.end() + 1]
            if (
                pos is None
                or len(word) < 3
                or word.lower() in self.stop_words
                or word.lower() in lowered_names
                or adjacent.isdigit()
                or (match.start() > 0 and text[match.start() - 1].isdigit())
                or _is_identifier_like(word, text, match.end())
            ):
                continue
            result.append((match.start(), match.end(), word, pos))
        return result

    @functools.lru_cache(maxsize=16384)  # noqa: B019 - bounded; one mutator per run
    def synonyms(self, word: str, pos: str) -> tuple[str, ...]:
        """WordNet synonyms of ``word`` (inflected like it), nearest ``top_k`` by MiniLM similarity."""
        lower = word.lower()
        lemma = self.wordnet.morphy(lower, pos) or lower
        suffix = ""
        if lemma != lower:
            # only regular plural / third-person forms are re-inflected; other forms keep their word
            if lower == lemma + "s" and pos in ("n", "v"):
                suffix = "s"
            elif lower == lemma + "es" and pos in ("n", "v"):
                suffix = "es"
            else:
                return ()
        names = []
        for synset in self.wordnet.synsets(lemma, pos):
            for name in synset.lemma_names():
                candidate = name.lower()
                if "_" in candidate or "-" in candidate or not candidate.isalpha() or candidate == lemma:
                    continue
                if candidate not in names:
                    names.append(candidate)
        if not names:
            return ()
        vectors = embed([lemma, *names], self.embedder)
        similarity = vectors[1:] @ vectors[0]
        ranked = [names[i] for i in np.argsort(-similarity, kind="stable")]
        # re-inflected forms must be real forms of the synonym ("matches" -> not "equales")
        inflected = [n + suffix for n in ranked if not suffix or self.wordnet.morphy(n + suffix, pos) == n]
        return tuple(inflected[: self.top_k])

    def _variant(self, text: str, spots: list[tuple[int, int, str, str]], rng: np.random.Generator):
        pieces, replaced, last = [], [], 0
        for start, end, word, pos in spots:
            if rng.random() >= self.probability:
                continue
            options = self.synonyms(word, pos)
            if not options:
                continue
            choice = options[int(rng.integers(len(options)))]
            if word[0].isupper():
                choice = choice.upper() if word.isupper() and len(word) > 1 else choice.capitalize()
            pieces.append(text[last:start] + choice)
            replaced.append((word, choice))
            last = end
        pieces.append(text[last:])
        return "".join(pieces), replaced

    def mutate(self, text: str, task: Task, rng: np.random.Generator) -> MutationResult:
        spots = self.eligible(text, task_identifiers(task))
        variants, replacements = [], []
        for _ in range(self.n_variants):
            variant, replaced = self._variant(text, spots, rng)
            variants.append(variant)
            replacements.append(replaced)
        changed = [i for i, v in enumerate(variants) if v != text]
        similarities = [1.0] * len(variants)
        if changed:
            vectors = embed([text] + [variants[i] for i in changed], self.embedder)
            for j, i in enumerate(changed):
                similarities[i] = float(vectors[j + 1] @ vectors[0])
        accepted = next((i for i in changed if similarities[i] >= self.threshold), None)
        return MutationResult(
            text=variants[accepted] if accepted is not None else text,
            changed=accepted is not None,
            variants=variants,
            similarities=similarities,
            replacements=[[list(pair) for pair in r] for r in replacements],  # type: ignore[misc]
            tagger=self.tagger.name,
        )
