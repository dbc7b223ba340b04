"""End-to-end memory networks (Sukhbaatar, Szlam, Weston, Fergus 2015, arXiv 1503.08895).

Read beside the paper: Sec. 2 (one layer, multiple layers), Sec. 4.1 (position encoding, temporal
encoding), Sec. 4.2 (linear start, random noise). Sentences x_i and the question q are embedded by
matrices A, C and B; the match ``p = Softmax(u·m_i)`` attends over the memories, ``o = Σ p_i c_i`` is read
out, and ``u ← u + o`` carries the state to the next hop; ``â = Softmax(W(o + u))`` answers.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.models.base import ModelOutput, replica_linear
from memtool.registry import register_model

PositiveInt = Annotated[int, Field(ge=1)]


def position_encoding_terms(embedding_dim: int, variant: str = "position") -> tuple[Tensor, Tensor]:
    """Split a PE weight ``l_kj`` into ``a_k - w_j b_k`` so that ``Σ_j l_j ⊙ A x_j`` becomes
    ``a ⊙ Σ_j A x_j - b ⊙ Σ_j w_j A x_j``: two weighted sums instead of a (batch, memories, words, d) product.

    ``position`` (the paper, Sec. 4.1): ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``, J the sentence's own length:
    ``a_k = 1 - k/d``, ``b_k = 1 - 2k/d``, ``w_j = j/J``.
    ``position_centered`` (the authors' code): ``l_kj = 1 + 4(k - (d+1)/2)(j - (J+1)/2)/(dJ)``, J the longest
    sentence of the data: ``a_k = 1``, ``b_k = -(k - (d+1)/2)``, ``w_j = 4(j - (J+1)/2)/(dJ)``.
    """
    k = torch.arange(1, embedding_dim + 1, dtype=torch.float32)
    if variant == "position_centered":
        return torch.ones(embedding_dim), -(k - (embedding_dim + 1) / 2)
    return 1 - k / embedding_dim, 1 - 2 * k / embedding_dim


def word_weights(words: Tensor, variant: str, embedding_dim: int, sentence_size: int) -> Tensor:
    """``w_j`` of ``position_encoding_terms`` for every word slot of (..., words) token ids."""
    j = torch.arange(1, words.shape[-1] + 1, device=words.device, dtype=torch.float32)
    if variant == "position_centered":
        return 4 * (j - (sentence_size + 1) / 2) / (embedding_dim * sentence_size)
    length = ((words != 0) * j).amax(-1, keepdim=True).clamp(min=1)  # up to the last known word
    return j / length


def position_encoding(
    sentence_length: int, embedding_dim: int, variant: str = "position", sentence_size: int = 0
) -> Tensor:
    """The full (words, d) PE matrix of one sentence of J words, for reading and tests."""
    a, b = position_encoding_terms(embedding_dim, variant)
    words = torch.ones(1, sentence_length, dtype=torch.long)
    w = word_weights(words, variant, embedding_dim, sentence_size).expand(1, sentence_length)[0]
    return a.unsqueeze(0) - w.unsqueeze(1) * b.unsqueeze(0)


def _embedding(vocab_size: int, dim: int, std: float) -> nn.Embedding:
    table = nn.Embedding(vocab_size, dim, padding_idx=0)  # index 0 is the nil word: kept at zero
    nn.init.normal_(table.weight, std=std)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


def _temporal(rows: int, dim: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(rows, dim) * std)


@register_model("memn2n")
class MemN2N(nn.Module):
    """End-to-end memory network (MemN2N): K hops of soft attention over sentence memories."""

    data_dims = ("vocab_size", "memory_size", "sentence_size")
    start_modes = ("linear_start",)  # Sec. 4.2

    def __init__(
        self,
        vocab_size: int,
        memory_size: int,
        sentence_size: int,
        embedding_dim: PositiveInt = 20,
        hops: PositiveInt = 3,
        weight_tying: Literal["adjacent", "layerwise"] = "adjacent",
        sentence_encoding: Literal["position", "position_centered", "bow"] = "position",
        temporal_encoding: bool = True,
        random_noise: Annotated[float, Field(ge=0, lt=1)] = 0.0,
        match: Literal["dot", "cosine", "mlp"] = "dot",
        answer: Literal["linear", "mlp"] = "linear",
        mlp_hidden: PositiveInt = 64,
        empty_slots_in_softmax: bool = False,
        init_std: Annotated[float, Field(gt=0)] = 0.1,
    ) -> None:
        super().__init__()
        self.hops = hops
        self.weight_tying = weight_tying
        self.sentence_encoding = sentence_encoding
        self.temporal_encoding = temporal_encoding
        self.random_noise = random_noise
        self.match = match
        self.memory_size = memory_size
        self.sentence_size = sentence_size  # the longest sentence of the data: J of position_centered
        # The authors' code keeps a story's unused memory slots (memory_size - n of them, all-nil, score 0)
        # inside the softmax: attention can flow to "nothing", more so in short stories.
        self.empty_slots_in_softmax = empty_slots_in_softmax
        self.linear_start = False  # Sec. 4.2: softmax removed from the memory layers while True
        d = embedding_dim

        # Adjacent tying (Sec. 2.2): A^{k+1} = C^k, B = A^1, W^T = C^K, so K+1 tables E_0..E_K serve as
        # A^k = E_{k-1} and C^k = E_k. Layer-wise: one A and one C for every hop, plus B, H and W.
        tables = hops + 1 if weight_tying == "adjacent" else 3
        self.embeddings = nn.ModuleList(_embedding(vocab_size, d, init_std) for _ in range(tables))
        # Random noise inserts up to ceil(noise·n) blank time slots, so temporal rows must cover them.
        time_rows = memory_size + math.ceil(random_noise * memory_size)
        self.temporal = nn.ParameterList(
            _temporal(time_rows, d, init_std) for _ in range(tables - (weight_tying == "layerwise"))
        )
        self.hop_map = nn.Linear(d, d, bias=False) if weight_tying == "layerwise" else None  # H
        if self.hop_map is not None:
            nn.init.normal_(self.hop_map.weight, std=init_std)

        if match == "cosine":
            self.cosine_scale = nn.Parameter(torch.tensor(5.0))  # cosine lies in [-1, 1]: too flat alone
        elif match == "mlp":
            self.match_memory = nn.Linear(d, mlp_hidden, bias=False)
            self.match_query = nn.Linear(d, mlp_hidden)
            self.match_out = nn.Linear(mlp_hidden, 1, bias=False)

        if answer == "mlp":
            self.answer_layer: nn.Module | None = nn.Sequential(
                nn.Linear(d, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, vocab_size)
            )
        elif weight_tying == "layerwise":
            self.answer_layer = nn.Linear(d, vocab_size, bias=False)
            nn.init.normal_(self.answer_layer.weight, std=init_std)
        else:
            self.answer_layer = None  # W^T = C^K

        pe_a, pe_b = position_encoding_terms(d, sentence_encoding)
        self.register_buffer("pe_a", pe_a, persistent=False)
        self.register_buffer("pe_b", pe_b, persistent=False)

    def set_mode(self, mode: str | None) -> None:
        """``"linear_start"``: the engine's start phase removes the softmax from the memory layers."""
        self.linear_start = mode == "linear_start"

    # -- encoding ------------------------------------------------------------------------------------
    def _tables(self) -> Tensor:
        """Every embedding table side by side, (vocab, tables·d): one lookup serves all hops (with
        replicas, (R, vocab, tables·d))."""
        return torch.cat([table.weight for table in self.embeddings], -1)

    def _encode(self, words: Tensor, tables: Tensor) -> Tensor:
        """Embed (..., words) token ids with every table at once into (..., tables, d): bag of words, or
        PE-weighted (Sec. 4.1).

        One ``embedding_bag`` over the side-by-side tables sums the looked-up rows, weighted by 1 and by
        w_j (``position_encoding_terms``), for every table in one call: its backward sorts the word ids
        once per step, not once per table, and no (..., words, d) tensor is made. (``position_centered``
        weighs the tables per word slot before the lookup instead.) The nil word (0, also
        unknown words) adds nothing and gets no gradient.
        """
        lead, length = words.shape[:-1], words.shape[-1]
        flat = words.reshape(-1, length)
        count = tables.shape[1] // self.pe_a.shape[0]  # tables side by side
        if self.sentence_encoding == "bow":
            encoded = self._bags(flat, tables, None).view(flat.shape[0], count, -1)
        elif self.sentence_encoding == "position_centered":
            # l_j depends on the word's slot j alone (J is the data's longest sentence): a table per slot,
            # the tables ⊙ l_j (small: slots × vocabulary), and one unweighted bag over the word ids
            # offset to their slot's table: half the ids of two weighted sums, and no (…, tables, d) products
            d, rows = self.pe_a.shape[0], tables.shape[0]
            slot = word_weights(flat, self.sentence_encoding, d, self.sentence_size).to(
                tables.dtype
            )  # (words,)
            weights = self.pe_a - slot.unsqueeze(1) * self.pe_b  # (words, d): l_kj
            per_slot = tables.view(1, rows, count, d) * weights.view(length, 1, 1, d)
            offsets = torch.arange(length, device=flat.device) * rows
            ids = torch.where(flat != 0, flat + offsets, 0)
            encoded = self._bags(ids, per_slot.view(length * rows, -1), None).view(flat.shape[0], count, -1)
        else:
            ratio = word_weights(flat, self.sentence_encoding, self.pe_a.shape[0], self.sentence_size)
            ratio = ratio.to(tables.dtype).expand(flat.shape)
            sums = self._bags(flat.repeat(2, 1), tables, torch.cat([torch.ones_like(ratio), ratio]))
            total, weighted = sums.view(2, flat.shape[0], count, -1)
            encoded = self.pe_a * total - self.pe_b * weighted
        return encoded.view(*lead, *encoded.shape[1:])

    @staticmethod
    def _bags(ids: Tensor, tables: Tensor, weights: Tensor | None) -> Tensor:
        """Σ_j weights[n, j] · tables[ids[n, j]] per row n (weights 1 if None); the nil word adds nothing."""
        return nn.functional.embedding_bag(ids, tables, mode="sum", per_sample_weights=weights, padding_idx=0)

    def _noise(self, batch: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor] | None:
        """Random noise's uniform draws for ``batch`` stories (None when it is off): one per story for how
        many blank slots, and one per (story, temporal row) for where. A stacked run draws each replica's
        from its own generator, in the same order a single run draws them from torch's."""
        if not (self.training and self.random_noise > 0):
            return None
        device = self.pe_a.device
        rows = self.temporal[0].shape[-2]
        blanks = torch.rand(batch, device=device, generator=generator)
        return blanks, torch.rand(batch, rows, device=device, generator=generator)

    def _time_index(self, memory_count: Tensor, slots: int, noise: tuple[Tensor, Tensor] | None) -> Tensor:
        """Temporal-encoding row of each memory: 0 for the most recent sentence (reverse order).

        Random noise (RN, Sec. 4.2), in training only (``noise``, from ``_noise``): per story, insert
        ``randint(0, ceil(noise·n))`` blank time slots at random places, so the model cannot rely on exact
        relative times.
        """
        count = memory_count.unsqueeze(1)  # (batch, 1)
        order = torch.arange(slots, device=memory_count.device).unsqueeze(0)  # (1, memories)
        if noise is None:
            return (count - 1 - order).clamp(min=0)
        uniform, keys = noise
        rows = keys.shape[1]
        most_blank = torch.ceil(self.random_noise * memory_count.float())
        blanks = torch.floor(uniform * (most_blank + 1)).long().unsqueeze(1)
        keys = keys.masked_fill(torch.arange(rows, device=count.device).unsqueeze(0) >= count + blanks, 2.0)
        chosen = keys.argsort(-1)[:, :slots]  # the first n are the kept slots, in random order
        chosen = torch.where(order < count, chosen, rows).sort(-1).values
        return torch.where(order < count, count + blanks - 1 - chosen, 0)

    # -- attention -----------------------------------------------------------------------------------
    def _scores(self, memory: Tensor, query: Tensor, replicas: int) -> Tensor:
        """Match of each memory (batch, memories, d) with the query (batch, d) → (batch, memories)."""
        if self.match == "dot":  # products and sums, not a batch of tiny matmuls: 2x faster here
            return (memory * query.unsqueeze(1)).sum(-1)
        if self.match == "cosine":
            cosine = nn.functional.cosine_similarity(memory, query.unsqueeze(1), dim=-1, eps=1e-6)
            scale = self.cosine_scale
            return cosine * (
                scale.repeat_interleave(query.shape[0] // replicas).unsqueeze(1) if replicas else scale
            )
        hidden = replica_linear(memory, self.match_memory, replicas)
        hidden = torch.tanh(hidden + replica_linear(query, self.match_query, replicas).unsqueeze(1))
        return replica_linear(hidden, self.match_out, replicas).squeeze(-1)

    def _empty_slot_scores(self, memory_count: Tensor, dtype: torch.dtype) -> Tensor | None:
        """With ``empty_slots_in_softmax``: k empty slots of score 0 weigh like one extra slot of score
        log k (exact, and independent of the batch's padding), (batch, 1); None otherwise."""
        if not self.empty_slots_in_softmax:
            return None
        empty = (self.memory_size - memory_count).clamp(min=0).to(dtype)
        return torch.where(empty > 0, empty.log(), torch.finfo(dtype).min).unsqueeze(1)

    def _softmax(self, scores: Tensor, mask: Tensor, empty_slots: Tensor | None) -> Tensor:
        """p = Softmax(scores) over a story's memories; padding slots of the batch get exactly 0."""
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        if empty_slots is None:
            return scores.softmax(-1) * mask  # the mask zeroes the uniform row of a story with no memory
        # the empty-slot column is finite whenever no slot is real, so padding already gets exp(min) = 0
        return torch.cat([scores, empty_slots.to(scores.dtype)], 1).softmax(-1)[:, :-1]

    def _table_index(self, role: str, hop: int) -> int:
        """Which embedding (and temporal) table plays ``role`` (A or C) at ``hop`` (0-based)."""
        if self.weight_tying == "adjacent":
            return hop if role == "A" else hop + 1  # A^{k+1} = C^k
        return 0 if role == "A" else 1

    def forward(self, story: Tensor, memory_count: Tensor, question: Tensor) -> ModelOutput:
        """story (batch, memories, words), memory_count (batch,), question (batch, words).

        Returns the answer logits (batch, vocab) and ``trace["attention"]`` (batch, hops, memories): p at
        each hop (raw scores during linear start)."""
        time = self._time_index(memory_count, story.shape[1], self._noise(story.shape[0], None))
        logits, attention = self._answer(story, memory_count, question, time, replicas=0)
        return ModelOutput(prediction=logits, trace={"attention": attention})

    def forward_replicas(
        self, batches: list[dict[str, Tensor]], generators: list[torch.Generator] | None
    ) -> ModelOutput:
        """R replicas of the model stepped as one (restarts trained together): every parameter carries a
        leading replica dimension (``memtool.models.base.stack_replicas``); replica r reads
        ``batches[r]`` (``forward``'s inputs) and draws its random noise from ``generators[r]``, so it
        computes what a model of its own would (None in evaluation, which draws nothing).

        The batches are padded to the largest story, sentence and batch among them (nil words, stories
        with no memory: they change nothing), each replica's word ids are offset to its own rows of the
        stacked tables and its time indices to its own temporal rows, and then every op runs once on
        R × batch stories; only the answer layer (and H, and the MLPs) is a product per replica. The
        output is the replicas' stacked, padded as the batches were (``replica_output`` cuts one out).
        """
        replicas = len(batches)
        sizes = [inputs["question"].shape[0] for inputs in batches]
        story = _padded([inputs["story"] for inputs in batches])
        size, most = story.shape[1:3]  # the largest batch and story
        question = _padded([inputs["question"] for inputs in batches])
        memory_count = _padded([inputs["memory_count"] for inputs in batches])
        vocab, rows = self.embeddings[0].weight.shape[1], self.temporal[0].shape[1]
        replica = torch.arange(replicas, device=story.device)
        story = torch.where(story != 0, story + (replica * vocab).view(-1, 1, 1, 1), 0).flatten(0, 1)
        question = torch.where(question != 0, question + (replica * vocab).view(-1, 1, 1), 0).flatten(0, 1)
        memory_count = memory_count.flatten()
        noise = None
        if self.training and self.random_noise > 0:
            assert generators is not None, "training draws each replica's noise from its own generator"
            draws = [self._noise(n, generator) for n, generator in zip(sizes, generators, strict=True)]
            blanks = _padded([draw[0] for draw in draws])  # type: ignore[index]
            keys = _padded([draw[1] for draw in draws])  # type: ignore[index]
            noise = blanks.flatten(), keys.flatten(0, 1)
        time = self._time_index(memory_count, most, noise) + (replica * rows).repeat_interleave(
            size
        ).unsqueeze(1)
        logits, attention = self._answer(story, memory_count, question, time, replicas)
        logits, attention = (
            logits.view(replicas, size, -1),
            attention.view(replicas, size, *attention.shape[1:]),
        )
        return ModelOutput(prediction=logits, trace={"attention": attention})

    def _answer(
        self, story: Tensor, memory_count: Tensor, question: Tensor, time: Tensor, replicas: int
    ) -> tuple[Tensor, Tensor]:
        """The K hops and the answer, for ``forward`` (``replicas`` 0) and ``forward_replicas`` (R: word
        ids and time indices already offset to each replica's rows, R equal blocks of stories)."""
        slots = story.shape[1]
        mask = torch.arange(slots, device=story.device).unsqueeze(0) < memory_count.unsqueeze(1)
        tables = self._tables()
        # the question's words join the story's sentences in one lookup
        width = max(story.shape[2], question.shape[1])
        sentences = nn.functional.pad(story, (0, width - story.shape[2])).view(-1, width)
        encoded = self._encode(
            torch.cat([sentences, nn.functional.pad(question, (0, width - question.shape[1]))]),
            tables.flatten(0, -2),
        )
        memory, questions = encoded.split([sentences.shape[0], question.shape[0]])  # split: backward is a cat
        memory = memory.view(*story.shape[:2], *encoded.shape[1:])
        if self.temporal_encoding:  # embedding(), not temporal[time]: its backward is far cheaper
            timed = nn.functional.embedding(time, torch.cat(list(self.temporal), -1).flatten(0, -2))
            timed = timed.view(*time.shape, len(self.temporal), -1)
            # layer-wise tying has no temporal table for B, which only the question uses
            memory = (
                memory if len(self.temporal) == memory.shape[2] else memory[:, :, : timed.shape[2]]
            ) + timed
        # each table's (batch, memories, d) memory vectors; unbind, not indexing: its backward is one stack
        memory = memory.permute(2, 0, 1, 3).contiguous().unbind(0)
        empty_slots = self._empty_slot_scores(memory_count, memory[0].dtype)

        query_table = 0 if self.weight_tying == "adjacent" else 2  # B = A^1, or its own table
        u = questions[:, query_table]  # (batch, d)
        attention = []
        for hop in range(self.hops):
            scores = self._scores(memory[self._table_index("A", hop)], u, replicas)
            weights = scores * mask if self.linear_start else self._softmax(scores, mask, empty_slots)
            read = (weights.unsqueeze(-1) * memory[self._table_index("C", hop)]).sum(1)  # o = Σ p_i c_i
            u = read + (replica_linear(u, self.hop_map, replicas) if self.hop_map is not None else u)
            attention.append(weights)

        if isinstance(self.answer_layer, nn.Sequential):
            first, _, last = self.answer_layer
            logits = replica_linear(torch.relu(replica_linear(u, first, replicas)), last, replicas)
        else:  # adjacent tying with a linear answer: W = (C^K)^T
            logits = replica_linear(u, self.answer_layer or self.embeddings[-1], replicas)
        # The nil word is never an answer; masking its logit also keeps its tied embedding row at zero.
        logits = logits.index_fill(1, torch.tensor([0], device=logits.device), torch.finfo(logits.dtype).min)
        return logits, torch.stack(attention, 1)


def _padded(parts: list[Tensor]) -> Tensor:
    """The replicas' tensors stacked, each zero-padded at the end of every dimension to the largest."""
    shape = tuple(max(sizes) for sizes in zip(*(part.shape for part in parts), strict=True))
    if all(part.shape == shape for part in parts):
        return torch.stack(parts)
    out = parts[0].new_zeros(len(parts), *shape)
    for index, part in enumerate(parts):
        out[(index, *(slice(0, n) for n in part.shape))] = part
    return out
