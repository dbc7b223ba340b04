"""Caption scores: BLEU-1..4, ROUGE-L and CIDEr-D from the COCO caption scorers (pycocoevalcap), whose
BLEU, ROUGE and CIDEr scorers are pure Python (its tokenizer, METEOR and SPICE need Java: captions are
tokenised in Python instead, ``data.tokenize``), and the repeated-word rate.

Its class named ``Cider`` computes CIDEr-D (clipped counts, a Gaussian length penalty, × 10), and its idf
comes from the references of the set being scored: score a whole split at once, and do not compare a
synthetic set's CIDEr-D with MSVD's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from memtool.errors import UserError

# words that repeat in any fluent caption ("a", "the", "then"): a repeat of one of them is no stutter
FUNCTION_WORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "then",
        "after",
        "that",
        "it",
        "its",
        "is",
        "are",
        "was",
        "were",
        "be",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "into",
        "onto",
        "this",
        "these",
        "those",
        "there",
        "he",
        "she",
        "they",
        "his",
        "her",
        "their",
        "while",
        "as",
        "or",
        "but",
        "so",
    }
)


def caption_scorers() -> tuple[object, object, object]:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        raise UserError(
            "caption metrics need pycocoevalcap: pip install 'memtool[caption]' (no Java needed)"
        ) from None
    return Bleu(4), Rouge(), Cider()


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus scores of one caption per video against all of that video's references, every caption
    already tokenised (words joined by single spaces). BLEU and ROUGE-L in [0, 1], CIDEr-D as the
    scorer gives it (× 10)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} captions for {len(references)} videos")
    if not hypotheses:
        return {}
    bleu, rouge, cider = caption_scorers()
    written = {i: [caption or "<empty>"] for i, caption in enumerate(hypotheses)}  # the scorers need a word
    truth = {i: list(refs) for i, refs in enumerate(references)}
    scores: dict[str, float] = {}
    bleus, _ = bleu.compute_score(truth, written, verbose=0)  # type: ignore[attr-defined]
    for n, value in enumerate(bleus, 1):
        scores[f"bleu{n}"] = float(value)
    scores["rouge_l"] = float(rouge.compute_score(truth, written)[0])  # type: ignore[attr-defined]
    scores["cider"] = float(cider.compute_score(truth, written)[0])  # type: ignore[attr-defined]
    return scores


def canonical_words(words: Sequence[str], synonyms: Mapping[str, str]) -> list[str | None]:
    """Each word as the word it stands for: a phrase in ``synonyms`` ("shows up" → "appears") becomes its
    canonical word on its first word and None on the rest; other words stay as they are."""
    longest = max((len(phrase.split()) for phrase in synonyms), default=1)
    out: list[str | None] = []
    index = 0
    while index < len(words):
        for size in range(min(longest, len(words) - index), 0, -1):
            phrase = " ".join(words[index : index + size])
            if phrase in synonyms:
                out += [synonyms[phrase], *[None] * (size - 1)]
                index += size
                break
        else:
            out.append(words[index])
            index += 1
    return out


def excess_words(
    words: Sequence[str], references: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> list[bool]:
    """Per word of a caption: whether it is a content word said here more often, so far, than any of the
    references says it (at least once is always allowed). With ``synonyms``, words are counted as the word
    they stand for, so "X appears then Y shows up" in a reference allows "appears" twice."""
    synonyms = synonyms or {}
    allowed: Counter[str] = Counter()
    for reference in references:
        said_there = Counter(w for w in canonical_words(reference.split(), synonyms) if w is not None)
        allowed |= said_there  # the most any reference says each word
    said: Counter[str] = Counter()
    flags = []
    for word in canonical_words(words, synonyms):
        if word is None:  # the rest of a phrase: its first word carries the flag
            flags.append(False)
            continue
        said[word] += 1
        flags.append(word not in FUNCTION_WORDS and said[word] > max(allowed[word], 1))
    return flags


def repeats_a_word(
    caption: str, references: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> bool:
    """Whether the caption says some content word more often than any of its references does: "a red
    red square" stutters; "the red square moves left then the red square moves right" does not, when a
    reference says "red" twice too."""
    return any(excess_words(caption.split(), references, synonyms))


def repeat_rate(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    synonyms: Mapping[str, str] | None = None,
) -> float:
    """% of captions that repeat a content word beyond what their references do (``repeat_metrics``'s
    rate, for captions without attention)."""
    captions = [hypothesis.split() for hypothesis in hypotheses]
    unplaced = [[None] * len(words) for words in captions]
    return repeat_metrics(captions, references, unplaced, synonyms)["repeat_rate"]


class SaidAgain(NamedTuple):
    """A content word said again: its position, its previous mention's, and whether it is a repeat."""

    word: str  # as the word it stands for: "shows up" is "appears", counted at its first word
    position: int
    earlier: int
    repeat: bool  # said more often than any reference says it (``excess_words``)


def said_again(
    words: Sequence[str], references: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> list[SaidAgain]:
    """Every content word of a caption that was said before (as the word it stands for), in order."""
    synonyms = synonyms or {}
    flags = excess_words(words, references, synonyms)
    last_seen: dict[str, int] = {}
    found = []
    for position, word in enumerate(canonical_words(words, synonyms)):
        if word is None or word in FUNCTION_WORDS:
            continue
        if word in last_seen:
            found.append(SaidAgain(word, position, last_seen[word], flags[position]))
        last_seen[word] = position
    return found


def repeat_metrics(
    captions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    peaks: Sequence[Sequence[int | None]],
    synonyms: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """The repeated-word rate and whether a word said again was read from the frame its earlier mention
    was: the "stares at one frame" failure the attention regularizer targets, in one pass over each
    caption. ``peaks[i][t]`` is the frame of caption i's word t with the most attention, None where no
    frame stands out (flat attention: then it is left out of the frame shares).
    ``repeat_rate``: % of captions with a repeat (as ``repeat_rate``; a repeat always has an earlier
    mention). Of the repeats ``excess_words`` flags, ``repeat_same_frame`` is the % whose peak frame is
    their previous mention's; ``mention_same_frame`` is the same % for the content words said again as a
    reference does too ("the red square ... the red square moves"), the contrast: a re-mention of an
    object in a later event should read a later frame. NaN where there is none."""
    same = {True: 0, False: 0}
    total = {True: 0, False: 0}
    repeating = 0
    for words, refs, caption_peaks in zip(captions, references, peaks, strict=True):
        found = said_again(words, refs, synonyms)
        repeating += any(again.repeat for again in found)
        for again in found:
            if caption_peaks[again.position] is None or caption_peaks[again.earlier] is None:
                continue
            total[again.repeat] += 1
            same[again.repeat] += caption_peaks[again.position] == caption_peaks[again.earlier]

    def share(repeat: bool) -> float:
        return 100.0 * same[repeat] / total[repeat] if total[repeat] else float("nan")

    rate = 100.0 * repeating / len(captions) if captions else float("nan")
    return {"repeat_rate": rate, "repeat_same_frame": share(True), "mention_same_frame": share(False)}
