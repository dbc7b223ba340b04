"""Attention captioning of video (Yao et al. 2015, arXiv 1502.08029; soft attention as in Xu et al. 2015,
arXiv 1502.03044), with the attention regularizer that keeps the decoder from staring at one frame.

Read beside the papers: frames are encoded one by one (a small CNN over raw frames, or a linear projection
of precomputed per-frame features), optionally by a BiLSTM over time. An LSTM decoder writes one word per
step; before each word it scores every frame with an additive (MLP) attention ``e_ti = v·tanh(W_f f_i +
W_h h_{t-1})``, takes ``α_t = softmax_i(e_ti)`` over the video's real frames, reads ``Σ_i α_ti f_i``
(scaled by Show, Attend and Tell's gate β when ``context_gate``) and feeds it with the previous word. The
regularizer ``λ Σ_i (τ − Σ_t α_ti)²`` sums each frame's attention over the caption's real words; with
``τ = auto`` it is the caption's length ÷ the video's frames, so uniform coverage meets it exactly.

``attention: mean`` is the baseline without attention: every word reads the mean of the frames.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.models.base import ModelOutput
from memtool.registry import register_model

PositiveInt = Annotated[int, Field(ge=1)]
PAD, BOS, EOS, UNK = 0, 1, 2, 3  # token ids every captioning vocabulary starts with
NEVER_WRITTEN = (PAD, BOS, UNK)  # a generated caption holds words and one <eos>, nothing else


def bidirectional_over_prefix(lstm: nn.LSTM, x: Tensor, mask: Tensor) -> Tensor:
    """A one-layer bidirectional ``lstm`` over (B, K, D) sequences whose real steps are a prefix
    (``mask``), what packing them gives, without packing: ``pack_padded_sequence`` wants the lengths on
    the host, a synchronisation in every CUDA step. The forward direction runs over the padded batch (the
    padding comes after every real step); the backward one runs forward over each sequence reversed
    within its length, with the reverse weights, and is reversed back. Padded steps give 0, as packed."""
    steps = torch.arange(x.shape[1], device=x.device)
    length = mask.sum(1).clamp_min(1).long().unsqueeze(1)  # a sequence of no frames runs one, as packed
    within = steps < length
    order = torch.where(within, length - 1 - steps, steps).unsqueeze(-1)  # reverses, and back again
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)

    def run(inputs: Tensor, suffix: str) -> Tensor:
        weights = [
            getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        return torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, lstm.training, False, True)[0]

    backward = run(x.gather(1, order.expand_as(x)), "_reverse")
    backward = backward.gather(1, order.expand_as(backward))
    return torch.cat([run(x, ""), backward], -1) * within.unsqueeze(-1)


def attention_penalty(
    alphas: Tensor, frame_mask: Tensor, word_mask: Tensor, tau: float | None
) -> tuple[Tensor, Tensor]:
    """Per video: ``Σ_i (τ − Σ_t α_ti)²`` and the coverage error ``Σ_i |τ − Σ_t α_ti|``, over real frames i
    and real words t. alphas (B, T, K), frame_mask (B, K) and word_mask (B, T) true where real; ``tau``
    None means auto: each caption's real length ÷ its video's real frames. Returns two (B,) tensors."""
    words = word_mask.to(alphas.dtype)
    frames = frame_mask.to(alphas.dtype)
    coverage = (alphas * words.unsqueeze(-1)).sum(1)  # (B, K): each frame's attention over the caption
    target = words.sum(1) / frames.sum(1).clamp_min(1) if tau is None else torch.full_like(words[:, 0], tau)
    gap = (target.unsqueeze(1) - coverage) * frames
    return (gap**2).sum(1), gap.abs().sum(1)


class FrameEncoder(nn.Module):
    """(B, K, *frame_shape) → (B, K, dim): a small CNN over raw (3, S, S) frames, or a linear projection
    of (F,) feature vectors; the whole batch's frames go through it at once."""

    def __init__(self, frame_shape: tuple[int, ...], dim: int) -> None:
        super().__init__()
        if len(frame_shape) == 3:
            channels = frame_shape[0]
            self.net: nn.Module = nn.Sequential(
                nn.Conv2d(channels, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(64, dim, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
        elif len(frame_shape) == 1:
            self.net = nn.Sequential(nn.Linear(frame_shape[0], dim), nn.ReLU())
        else:
            raise ValueError(
                f"frames must be (channels, height, width) images or (features,) vectors, got {frame_shape}"
            )
        self.frame_shape = tuple(frame_shape)

    def forward(self, frames: Tensor) -> Tensor:
        batch, count = frames.shape[:2]
        return self.net(frames.flatten(0, 1)).view(batch, count, -1)


@register_model("captioner")
class Captioner(nn.Module):
    """Video captioner: an LSTM decoder with soft attention over frames and the attention regularizer."""

    data_dims = ("vocab_size", "frame_shape")
    start_modes = ()

    def __init__(
        self,
        vocab_size: int,
        frame_shape: list[int],
        frame_dim: PositiveInt = 128,
        temporal_encoder: bool = False,  # a BiLSTM over the frame vectors
        embedding_dim: PositiveInt = 64,
        hidden_size: PositiveInt = 256,
        attention: Literal["soft", "mean"] = "soft",
        attention_dim: PositiveInt = 128,
        context_gate: bool = True,
        dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3,
        reg_lambda: Annotated[float, Field(ge=0)] = 1.0,
        reg_tau: float | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        if temporal_encoder and frame_dim < 2:
            raise ValueError(f"frame_dim {frame_dim}: the BiLSTM of temporal_encoder needs at least 2")
        if reg_tau != "auto" and not reg_tau > 0:
            raise ValueError(f"reg_tau {reg_tau}: the target coverage is a number above 0, or auto")
        self.encoder = FrameEncoder(tuple(frame_shape), frame_dim)
        self.temporal = (
            nn.LSTM(frame_dim, frame_dim // 2, batch_first=True, bidirectional=True)
            if temporal_encoder
            else None
        )
        context = (frame_dim // 2) * 2 if temporal_encoder else frame_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.init_state = nn.Linear(context, 2 * hidden_size)
        self.frame_key = nn.Linear(context, attention_dim)
        self.state_key = nn.Linear(hidden_size, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.gate = nn.Linear(hidden_size, context) if context_gate else None
        self.decoder = nn.LSTMCell(embedding_dim + context, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size + context, vocab_size)
        self.attention_kind = attention
        self.reg_lambda = reg_lambda
        self.reg_tau = None if reg_tau == "auto" else float(reg_tau)

    @property
    def regularizer(self) -> tuple[float, float | None]:
        """λ and τ (None: auto) as the loss applies them: mean pooling has no attention to penalise."""
        return (self.reg_lambda if self.attention_kind == "soft" else 0.0), self.reg_tau

    def set_mode(self, mode: str | None) -> None:
        """No start modes."""

    # -- the pieces, one step at a time ----------------------------------------------------------------
    def encode(self, frames: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Frame vectors (B, K, C), their attention keys (B, K, A), and the decoder's first state from
        the mean of the real frames."""
        features = self.encoder(frames) * frame_mask.unsqueeze(-1)
        if self.temporal is not None:
            features = bidirectional_over_prefix(self.temporal, features, frame_mask)
        real = frame_mask.unsqueeze(-1).to(features.dtype)
        mean = (features * real).sum(1) / real.sum(1).clamp_min(1)
        hidden, cell = torch.tanh(self.init_state(mean)).chunk(2, -1)
        return features, self.frame_key(features), (hidden.contiguous(), cell.contiguous())

    def attend(
        self, features: Tensor, keys: Tensor, frame_mask: Tensor, hidden: Tensor
    ) -> tuple[Tensor, Tensor]:
        """α over the real frames (B, K) and the context read with it (B, C)."""
        if self.attention_kind == "mean":
            alpha = frame_mask.to(features.dtype)
            alpha = alpha / alpha.sum(1, keepdim=True).clamp_min(1)
        else:
            scores = self.score(torch.tanh(keys + self.state_key(hidden).unsqueeze(1))).squeeze(-1)
            alpha = torch.softmax(scores.masked_fill(~frame_mask, float("-inf")), dim=-1)
        context = (alpha.unsqueeze(-1) * features).sum(1)
        if self.gate is not None:
            context = torch.sigmoid(self.gate(hidden)) * context
        return alpha, context

    def step(
        self, word: Tensor, state: tuple[Tensor, Tensor], features: Tensor, keys: Tensor, frame_mask: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """One word: logits (B, V) for the next word, the new state, α (B, K)."""
        alpha, context = self.attend(features, keys, frame_mask, state[0])
        state = self.decoder(torch.cat([self.dropout(self.embedding(word)), context], -1), state)
        logits = self.output(self.dropout(torch.cat([state[0], context], -1)))
        return logits, state, alpha

    # -- training: teacher forcing ---------------------------------------------------------------------
    def forward(
        self,
        frames: Tensor,
        frame_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
        video_index: Tensor | None = None,
    ) -> ModelOutput:
        """frames (V, K, *frame_shape), frame_mask (V, K); words (B, T): <bos> then the caption, the
        decoder's inputs; word_mask (B, T): true where the word to predict at that step is real (the
        caption and its <eos>); video_index (B,): which of the V videos each caption describes (None: the
        b-th, V = B), so a video with several references in the batch is encoded once. Returns logits
        (B, T, V), the trace ``attention`` (B, T, K), and the regularizer as the auxiliary loss
        ``attention_reg``: λ × the captions' penalties summed, ÷ the batch's real words (see below)."""
        frame_mask = frame_mask.bool()
        features, keys, state = self.encode(frames, frame_mask)
        if video_index is not None:
            features, keys, frame_mask = features[video_index], keys[video_index], frame_mask[video_index]
            state = (state[0][video_index], state[1][video_index])
        logits, alphas = [], []
        for t in range(words.shape[1]):
            step_logits, state, alpha = self.step(words[:, t], state, features, keys, frame_mask)
            logits.append(step_logits)
            alphas.append(alpha)
        attention = torch.stack(alphas, 1)
        aux = {}
        reg_lambda, reg_tau = self.regularizer
        if reg_lambda > 0:
            penalty, _ = attention_penalty(attention, frame_mask, word_mask.bool(), reg_tau)
            # reduced like the caption loss (a mean per real word): the ratio of penalty to NLL is then
            # that of Show, Attend and Tell's code (per-caption NLL + λ × per-caption penalty), so its
            # λ = 1 means the same here, whatever the captions' lengths
            aux["attention_reg"] = reg_lambda * penalty.sum() / word_mask.sum().clamp_min(1)
        return ModelOutput(prediction=torch.stack(logits, 1), trace={"attention": attention}, aux_losses=aux)

    # -- captioning: greedy or beam search -------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, frames: Tensor, frame_mask: Tensor, max_words: int = 20, beam_size: int = 1
    ) -> tuple[Tensor, Tensor]:
        """Captions (B, L) of word ids ending in <eos> (then <pad>), at most ``max_words`` words plus
        <eos>, and the attention of each written word (B, L, K). Beam search keeps ``beam_size``
        hypotheses per video and returns the one with the best mean log-probability per word; a video
        whose beams never write <eos> gets its best unfinished one."""
        frame_mask = frame_mask.bool()
        batch, count = frame_mask.shape
        features, keys, state = self.encode(frames, frame_mask)
        beams = beam_size
        # every video's beams side by side: row b * beams + k
        features = features.repeat_interleave(beams, 0)
        keys = keys.repeat_interleave(beams, 0)
        mask = frame_mask.repeat_interleave(beams, 0)
        state = (state[0].repeat_interleave(beams, 0), state[1].repeat_interleave(beams, 0))
        device = features.device
        words = torch.full((batch * beams,), BOS, dtype=torch.long, device=device)
        score = torch.zeros(batch, beams, device=device)
        score[:, 1:] = float("-inf")  # all beams start as one hypothesis
        finished = torch.zeros(batch * beams, dtype=torch.bool, device=device)
        lengths = torch.zeros(batch * beams, device=device)
        written = torch.zeros(batch * beams, 0, dtype=torch.long, device=device)
        attention = torch.zeros(batch * beams, 0, count, device=device)
        for step in range(max_words + 1):
            logits, state, alpha = self.step(words, state, features, keys, mask)
            logits[:, list(NEVER_WRITTEN)] = float("-inf")
            log_probs = torch.log_softmax(logits, -1)  # (B·k, V)
            if step == max_words:  # the last step may only end the caption: at most max_words words
                eos = log_probs[:, EOS].clone()
                log_probs.fill_(float("-inf"))
                log_probs[:, EOS] = eos
            # a finished hypothesis only extends with <pad>, at no cost
            log_probs[finished] = float("-inf")
            log_probs[finished, PAD] = 0.0
            vocab = log_probs.shape[1]
            total = (score.view(-1, 1) + log_probs).view(batch, beams * vocab)
            lengths_now = (lengths + (~finished).float()).view(batch, beams, 1).expand(-1, -1, vocab)
            ranking = total / lengths_now.reshape(batch, -1).clamp_min(1)  # mean log-probability per word
            ranking = ranking.masked_fill(torch.isinf(total), float("-inf"))
            chosen = ranking.topk(beams, dim=1).indices  # (B, k)
            source = chosen // vocab + torch.arange(batch, device=device).unsqueeze(1) * beams
            source, words = source.view(-1), (chosen % vocab).view(-1)
            score = total.gather(1, chosen)
            finished, lengths = finished[source], lengths[source] + (~finished[source]).float()
            written = torch.cat([written[source], words.unsqueeze(1)], 1)
            attention = torch.cat([attention[source], alpha[source].unsqueeze(1)], 1)
            state = (state[0][source], state[1][source])
            finished = finished | (words == EOS)
            if bool(finished.all()):
                break
        mean_score = (score.view(-1) / lengths.clamp_min(1)).view(batch, beams)
        mean_score = mean_score.masked_fill(~finished.view(batch, beams), float("-inf"))
        unfinished = torch.isinf(mean_score).all(1)  # no <eos> in any beam: take the best unfinished
        fallback = (score.view(-1) / lengths.clamp_min(1)).view(batch, beams)
        mean_score = torch.where(unfinished.unsqueeze(1), fallback, mean_score)
        best = mean_score.argmax(1) + torch.arange(batch, device=device) * beams
        return written[best], attention[best]
