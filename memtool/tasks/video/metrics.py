"""Caption scores: BLEU-1..4, ROUGE-L and CIDEr-D from the COCO caption scorers (pycocoevalcap), whose
BLEU, ROUGE and CIDEr scorers are pure Python (its tokenizer, METEOR and SPICE need Java: captions are
tokenised in Python instead, ``data.tokenize``), and the repeated-word rate.

Its class named ``Cider`` computes CIDEr-D (clipped counts, a Gaussian length penalty, × 10), and its idf
comes from the references of the set being scored: score a whole split at once, and do not compare a
synthetic set's CIDEr-D with MSVD's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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


def excess_words(words: Sequence[str], references: Sequence[str]) -> list[bool]:
    """Per word of a caption: whether it is a content word said here more often, so far, than any of the
    references says it (at least once is always allowed)."""
    allowed: Counter[str] = Counter()
    for reference in references:
        allowed |= Counter(reference.split())  # the most any reference says each word
    said: Counter[str] = Counter()
    flags = []
    for word in words:
        said[word] += 1
        flags.append(word not in FUNCTION_WORDS and said[word] > max(allowed[word], 1))
    return flags


def repeats_a_word(caption: str, references: Sequence[str]) -> bool:
    """Whether the caption says some content word more often than any of its references does: "a red
    red square" stutters; "the red square moves left then the red square moves right" does not, when a
    reference says "red" twice too."""
    return any(excess_words(caption.split(), references))


def repeat_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """% of captions that repeat a content word beyond what their references do."""
    if not hypotheses:
        return float("nan")
    flagged = sum(repeats_a_word(h, refs) for h, refs in zip(hypotheses, references, strict=True))
    return 100.0 * flagged / len(hypotheses)
