"""One bAbI question through a trained model: its story, the attention at every hop, the answer."""

from __future__ import annotations

import torch
from torch import nn

from memtool.errors import UserError
from memtool.tasks.babi.task import BabiInspectOptions, BabiTask
from memtool.tasks.babi.tensors import NIL, Split, Vocabulary, batch_from_split, tensorise
from memtool.tasks.babi.text import LINE_ID, Question, Story, tokenize
from memtool.tasks.babi.view import AttentionView
from memtool.views import InspectRequest


def _words(vocab: Vocabulary, ids: torch.Tensor) -> str:
    return " ".join(vocab.words[i] for i in ids.tolist() if i != 0)


def _view(
    model: nn.Module, split: Split, row: int, vocab: Vocabulary, title: str, labels_from: int
) -> AttentionView:
    rows = torch.tensor([row], device=split.answers.device)
    batch = batch_from_split(split, rows).to(next(model.parameters()).device)
    with torch.no_grad():
        model.eval()
        output = model(**batch.inputs)
    probabilities = output.prediction[0].float().softmax(-1)
    top = probabilities.topk(min(3, probabilities.numel()))
    count = int(batch.inputs["memory_count"][0])
    story = batch.inputs["story"][0, :count]
    attention = output.trace["attention"][0, :, :count].T  # (memories, hops)
    answer_id = int(split.answers[row])
    notes = []
    empty = None
    if getattr(model, "empty_slots_in_softmax", False) and not getattr(model, "linear_start", False):
        empty = (1 - attention.sum(0)).clamp(min=0).cpu().tolist()
    if getattr(model, "linear_start", False):
        notes.append("linear start is on: weights are raw scores, not a softmax")
    if labels_from > 0:
        notes.append(f"sentences 1–{labels_from} are older than the memory holds ({count} most recent kept)")
    return AttentionView(
        title=title,
        memories=[_words(vocab, sentence) for sentence in story],
        memory_labels=[str(labels_from + i + 1) for i in range(count)],
        attention=attention.cpu().tolist(),
        supporting=[s for s in split.supporting[row].tolist() if s >= 0],
        question=_words(vocab, split.questions[row]) + "?",
        predicted=vocab.words[int(top.indices[0])],
        top_answers=[(vocab.words[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)],
        answer=vocab.words[answer_id] if answer_id != 0 else None,
        notes=notes,
        empty_slots=empty,
    )


def inspect_babi(task: BabiTask, model: nn.Module, request: InspectRequest) -> AttentionView:
    options = request.options or BabiInspectOptions()
    if options.story is not None:
        return _inspect_user_story(task, model, options)
    if options.question is not None:
        raise UserError("--question needs --story FILE: the story the question is about")
    if request.split not in task.splits:
        raise UserError(f"--split: unknown split {request.split!r}; choose from {', '.join(task.splits)}")
    split = task.splits[request.split]
    rows = torch.arange(len(split))
    if options.task is not None:
        rows = torch.nonzero(split.tasks.cpu() == options.task).squeeze(1)
        if len(rows) == 0:
            present = sorted(set(split.tasks.tolist()))
            raise UserError(
                f"--task: no bAbI task {options.task} in the {request.split} split; present: {present}"
            )
    if not 0 <= request.example < len(rows):
        raise UserError(
            f"--example: {request.example} is out of range; "
            f"the selection has {len(rows)} examples (0–{len(rows) - 1})"
        )
    row = int(rows[request.example])
    number = int(split.tasks[row])
    older = int(split.memory_end[row] - split.memory_count[row] - split.story_start[row])
    title = f"bAbI task {number} · {request.split} example {request.example}"
    return _view(model, split, row, task.vocab, title, labels_from=older)


def _inspect_user_story(task: BabiTask, model: nn.Module, request: BabiInspectOptions) -> AttentionView:
    if not request.question:
        raise UserError('--story needs --question, e.g. --question "Where is Mary?"')
    path = request.story
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the story: {error}") from None
    lines = [line for line in lines if line.strip() and "\t" not in line]  # question lines are not memories
    # bAbI-style "1 Mary moved." lines lose their IDs; plain sentences ("2 apples fell.") keep every word
    numbered = bool(lines) and all(LINE_ID.match(line) for line in lines)
    sentences = [tokenize(LINE_ID.match(line).group(2) if numbered else line) for line in lines]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        raise UserError(f"{path}: the story has no sentences")
    question = tokenize(request.question)
    if not question:
        raise UserError(f"--question {request.question!r}: has no words")
    story = Story(task=0, sentences=sentences, questions=[Question(question, NIL, [], len(sentences))])
    split = tensorise([story], task.vocab, task.params.memory_size)
    older = max(len(sentences) - task.params.memory_size, 0)
    view = _view(model, split, 0, task.vocab, f"your story · {path.name}", older)
    # show the user's own words; the ones the model never saw (and read as nothing) in brackets
    known = task.vocab.index
    shown = [
        " ".join(w if w in known else f"[{w}]" for w in words) for words in [*sentences[older:], question]
    ]
    view.memories, view.question = shown[:-1], shown[-1] + "?"
    unknown = sorted({w for words in [*sentences, question] for w in words if w not in known})
    if unknown:
        view.notes.insert(0, f"words the model never saw, read as nothing: {', '.join(unknown)}")
    return view
