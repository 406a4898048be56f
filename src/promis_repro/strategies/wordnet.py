"""WordNet and a part-of-speech tagger for the lexical mutation, offline-first.

WordNet: NLTK's own ``wordnet`` corpus when it is installed (online users run
``nltk.download("wordnet")``), else Debian's ``wordnet-base`` dictionary files
(``/usr/share/wordnet``). Debian does not ship the ``lexnames`` file NLTK's
reader needs, so the reader is pointed at a directory in the cache holding
links to the Debian files plus ``lexnames`` (a fixed table of WordNet 3.0).

Tagger: NLTK's averaged perceptron when its model is installed; otherwise a
unigram tagger built on WordNet itself (each word's most frequent part of
speech by the SemCor sense counts in ``cntlist.rev``). Which one ran is
recorded with every mutation.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_bytes, atomic_write_text, cache_root

DEBIAN_WORDNET = Path("/usr/share/wordnet")
WORDNET_FILES = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
    "cntlist.rev",
    "index.sense",
)
#: WordNet 3.0 ``lexnames`` (lexicographer file number, name, syntactic category), see lexnames(5WN)
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
#: WordNet part of speech -> the Penn tag the unigram tagger reports
_PENN = {"n": "NN", "v": "VB", "a": "JJ", "s": "JJ", "r": "RB"}


def _debian_corpus_dir(source: Path) -> Path:
    """A directory NLTK can read: Debian's files plus the missing ``lexnames``.

    Copies (28 MB, once): NLTK >= 3.9 refuses symlinks that resolve outside
    the corpus root and files with more than one hard link.
    """
    target = cache_root() / "wordnet-debian"
    target.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:
        destination = target / name
        if destination.is_symlink() or (destination.exists() and destination.stat().st_nlink > 1):
            destination.unlink()
        if (source / name).exists() and not destination.exists():
            atomic_write_bytes(destination, (source / name).read_bytes())
    lexnames = "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
    if not (target / "lexnames").exists():
        atomic_write_text(target / "lexnames", lexnames)
    return target


def _english_reader_class() -> type:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNetReader(WordNetCorpusReader):  # type: ignore[misc]
        """The reader without its mapping to NLTK's own WordNet (only needed for other languages' wordnets)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    return EnglishWordNetReader


@functools.cache
def load_wordnet() -> tuple[Any, str]:
    """The WordNet reader and a description of where it came from."""
    import nltk

    explicit = os.environ.get("PROMIS_REPRO_WORDNET")
    try:
        location = nltk.data.find("corpora/wordnet") if not explicit else None
    except LookupError:
        location = None
    if location is not None:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet, f"nltk-data:{location}"
    source = Path(explicit) if explicit else DEBIAN_WORDNET
    if not (source / "data.noun").exists():
        raise UserError(
            f"WordNet not found (looked for NLTK's corpus and {source}); install Debian's wordnet-base "
            "or run python -m nltk.downloader wordnet"
        )
    corpus = _debian_corpus_dir(source)
    # NLTK >= 3.9 reads corpora only below its data path roots
    if str(corpus) not in nltk.data.path:
        nltk.data.path.append(str(corpus))
    with warnings.catch_warnings():  # "multilingual functions are not available": we use English only
        warnings.simplefilter("ignore", UserWarning)
        reader = _english_reader_class()(str(corpus), None)
    return reader, f"debian-wordnet:{source}"


class WordNetTagger:
    """Unigram tagger: a word's most frequent WordNet part of speech (SemCor counts), else ``NN``.

    Capitalized words not at the start of a sentence are proper nouns
    (``NNP``); words WordNet does not know are tagged ``XX`` (never mutated).
    """

    name = "wordnet-unigram"

    def __init__(self, wordnet: Any) -> None:
        self.wordnet = wordnet

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one tagger per process, bounded cache
    def _tag_word(self, word: str) -> str:
        counts: dict[str, int] = {}
        for synset in self.wordnet.synsets(word.lower()):
            pos = synset.pos()
            total = sum(lemma.count() for lemma in synset.lemmas() if lemma.name().lower() == word.lower())
            counts[pos] = counts.get(pos, 0) + total + 1  # +1: a sense with no SemCor count still counts
        if not counts:
            return "XX"
        return _PENN[max(counts, key=lambda p: counts[p])]

    def tag(self, words: list[str], sentence_start: list[bool]) -> list[str]:
        tags = []
        for word, start in zip(words, sentence_start, strict=True):
            if word[:1].isupper() and not start and not word.isupper():
                tags.append("NNP")
            else:
                tags.append(self._tag_word(word))
        return tags


class PerceptronTagger:
    """NLTK's averaged perceptron (needs the ``averaged_perceptron_tagger_eng`` data)."""

    name = "nltk-perceptron"

    def __init__(self) -> None:
        from nltk.tag import PerceptronTagger as _Tagger

        self._tagger = _Tagger()

    def tag(self, words: list[str], sentence_start: list[bool]) -> list[str]:
        return [tag for _, tag in self._tagger.tag(words)]


@functools.cache
def load_tagger() -> WordNetTagger | PerceptronTagger:
    import nltk

    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
        return PerceptronTagger()
    except LookupError:
        return WordNetTagger(load_wordnet()[0])


def wordnet_pos(penn_tag: str) -> str | None:
    """Penn tag -> WordNet part of speech for the four open classes; None for every other tag."""
    if penn_tag.startswith("NNP"):
        return None
    for prefix, pos in (("NN", "n"), ("VB", "v"), ("JJ", "a"), ("RB", "r")):
        if penn_tag.startswith(prefix):
            return pos
    return None
