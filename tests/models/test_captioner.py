"""The video captioner: attention over real frames only, the regularizer against a hand computation,
τ = auto, its gradient, teacher forcing, and greedy and beam-search decoding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from memtool.models.captioner import (
    BOS,
    EOS,
    NEVER_WRITTEN,
    PAD,
    UNK,
    Captioner,
    attention_penalty,
    bidirectional_over_prefix,
)


def test_the_penalty_and_coverage_error_match_a_hand_computation() -> None:
    # one video, 3 frames (the last one padding), 2 words (then one padded step)
    alphas = torch.tensor([[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]])
    frame_mask = torch.tensor([[True, True, False]])
    word_mask = torch.tensor([[True, True, False]])
    penalty, error = attention_penalty(alphas, frame_mask, word_mask, tau=1.0)
    # coverage: frame 1 = 0.5 + 0.9 = 1.4, frame 2 = 0.5 + 0.1 = 0.6; padded frame and step do not count
    assert penalty.item() == pytest.approx((1 - 1.4) ** 2 + (1 - 0.6) ** 2)
    assert error.item() == pytest.approx(0.4 + 0.4)
    auto, _ = attention_penalty(alphas, frame_mask, word_mask, tau=None)  # τ = 2 words / 2 frames = 1
    assert auto.item() == pytest.approx(penalty.item())
    uniform = torch.full((1, 4, 2), 0.5)
    zero, _ = attention_penalty(
        uniform, torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool), None
    )
    assert zero.item() == pytest.approx(0.0)  # uniform coverage meets τ = auto exactly


def test_the_penalty_gradient_is_right() -> None:
    alphas = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    frame_mask = torch.tensor([[True, True, True], [True, True, False]])
    word_mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert torch.autograd.gradcheck(
        lambda a: attention_penalty(a, frame_mask, word_mask, None)[0].sum(), alphas
    )


def test_the_penalty_gradient_moves_attention_from_the_stared_at_frame_to_the_unattended_ones() -> None:
    """The paper's failure: every word on frame 1. One gradient step on the attention logits takes
    attention off frame 1 and gives each unattended frame more, at every word; padding stays out."""
    scores = torch.tensor([[4.0, 0.0, 0.0, 0.0]]).repeat(3, 1).unsqueeze(0).requires_grad_()  # (1, 3, 4)
    frame_mask = torch.tensor([[True, True, True, False]])  # frame 4 is padding
    alphas = torch.softmax(scores.masked_fill(~frame_mask.unsqueeze(1), float("-inf")), -1)
    penalty, _ = attention_penalty(alphas, frame_mask, torch.ones(1, 3, dtype=torch.bool), None)
    penalty.sum().backward()
    with torch.no_grad():
        stepped = torch.softmax((scores - 0.1 * scores.grad).masked_fill(~frame_mask.unsqueeze(1), -1e9), -1)
    assert (stepped[0, :, 0] < alphas[0, :, 0]).all()  # the stared-at frame loses at every word
    assert (stepped[0, :, 1:3] > alphas[0, :, 1:3]).all()  # each unattended real frame gains
    assert stepped[0, :, 3].max() == 0 and scores.grad[0, :, 3].abs().max() == 0  # padding: none, no push


def _model(**options) -> Captioner:
    torch.manual_seed(0)
    return Captioner(
        vocab_size=12,
        frame_shape=[3, 16, 16],
        frame_dim=16,
        embedding_dim=8,
        hidden_size=16,
        attention_dim=8,
        **options,
    ).eval()


def _batch():
    frames = torch.rand(3, 5, 3, 16, 16)
    frame_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    words = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, PAD], [BOS, 4, PAD, PAD]])
    word_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    return frames, frame_mask, words, word_mask


@pytest.mark.parametrize("options", [{}, {"temporal_encoder": True}, {"context_gate": False}])
def test_attention_rows_sum_to_one_over_real_frames_and_padding_gets_none(options: dict) -> None:
    frames, frame_mask, words, word_mask = _batch()
    output = _model(**options)(frames, frame_mask, words, word_mask)
    attention = output.trace["attention"]
    assert output.prediction.shape == (3, 4, 12) and attention.shape == (3, 4, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 4))
    assert attention[1, :, 3:].eq(0).all() and attention[2, :, 2:].eq(0).all()
    assert set(output.aux_losses) == {"attention_reg"} and output.aux_losses["attention_reg"] > 0


def test_the_auxiliary_loss_is_lambda_times_the_penalties_per_real_word() -> None:
    frames, frame_mask, words, word_mask = _batch()
    output = _model(reg_lambda=0.5)(frames, frame_mask, words, word_mask)
    penalty, _ = attention_penalty(output.trace["attention"], frame_mask, word_mask, None)
    expected = 0.5 * penalty.sum() / 9  # 4 + 3 + 2 real words: reduced as the per-word caption loss
    torch.testing.assert_close(output.aux_losses["attention_reg"], expected)


def test_padded_frames_do_not_change_what_the_model_says() -> None:
    frames, frame_mask, words, word_mask = _batch()
    model = _model(temporal_encoder=True)
    before = model(frames, frame_mask, words, word_mask).prediction
    frames[1, 3:] = torch.rand(2, 3, 16, 16)  # other pixels in video 1's padded frames
    after = model(frames, frame_mask, words, word_mask).prediction
    torch.testing.assert_close(before, after)


def test_lambda_zero_and_the_mean_pooling_baseline_have_no_regularizer() -> None:
    frames, frame_mask, words, word_mask = _batch()
    assert _model(reg_lambda=0.0)(frames, frame_mask, words, word_mask).aux_losses == {}
    pooled = _model(attention="mean")(frames, frame_mask, words, word_mask)
    assert pooled.aux_losses == {}
    assert _model(attention="mean", reg_tau=1.5).regularizer == (0.0, 1.5)  # what eval and inspect show
    torch.testing.assert_close(pooled.trace["attention"][1, 0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0]))


def test_the_regularizer_trains_attention_towards_uniform_coverage() -> None:
    frames, frame_mask, words, word_mask = _batch()
    model = _model(reg_lambda=10.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        output = model(frames, frame_mask, words, word_mask)
        loss = output.aux_losses["attention_reg"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 5


def _log_probability(model: Captioner, frames, frame_mask, caption: torch.Tensor) -> float:
    """Mean log-probability per word of a generated caption (up to and including its <eos>)."""
    length = int((caption != PAD).sum())
    words = torch.cat([torch.tensor([BOS]), caption[: length - 1]]).unsqueeze(0)
    logits = model(frames, frame_mask, words, torch.ones_like(words, dtype=torch.bool)).prediction
    logits[..., list(NEVER_WRITTEN)] = float("-inf")  # as decoding sees them
    picked = torch.log_softmax(logits, -1)[0, torch.arange(length), caption[:length]]
    return picked.mean().item()


def test_beam_search_of_one_is_greedy_and_wider_beams_score_at_least_as_well() -> None:
    frames, frame_mask, _, _ = _batch()
    model = _model()
    greedy, greedy_attention = model.generate(frames, frame_mask, max_words=6, beam_size=1)
    assert (
        greedy.shape[0] == 3 and greedy_attention.shape[:2] == greedy.shape and greedy_attention.shape[2] == 5
    )
    torch.testing.assert_close(
        greedy_attention.sum(-1)[greedy != PAD], torch.ones(int((greedy != PAD).sum()))
    )
    manual = []  # greedy by hand: the most likely word at each step
    for row in range(3):
        words = [BOS]
        for step in range(7):
            logits = model(
                frames[row : row + 1],
                frame_mask[row : row + 1],
                torch.tensor([words]),
                torch.ones(1, len(words), dtype=torch.bool),
            ).prediction[0, -1]
            logits[list(NEVER_WRITTEN)] = float("-inf")
            words.append(EOS if step == 6 else int(logits.argmax()))  # 6 words at most, then <eos>
            if words[-1] == EOS:
                break
        manual.append(words[1:])
    for row in range(3):
        produced = [w for w in greedy[row].tolist() if w != PAD]
        assert produced == manual[row]
    wide, _ = model.generate(frames, frame_mask, max_words=6, beam_size=4)
    for row in range(3):
        finished_wide = EOS in wide[row].tolist()
        if finished_wide and EOS in greedy[row].tolist():
            assert (
                _log_probability(model, frames[row : row + 1], frame_mask[row : row + 1], wide[row])
                >= _log_probability(model, frames[row : row + 1], frame_mask[row : row + 1], greedy[row])
                - 1e-5
            )
    for caption in [*greedy.tolist(), *wide.tolist()]:  # words, one <eos>, then only <pad>
        written = [w for w in caption if w != PAD]
        assert len(written) <= 7 and written[-1] == EOS and EOS not in written[:-1]
        assert not set(written) & {BOS, UNK} and caption[: len(written)] == written


def test_an_untrained_decoder_still_stops_at_max_words_and_never_writes_a_special_token() -> None:
    frames, frame_mask, _, _ = _batch()
    model = _model()
    with torch.no_grad():  # make <pad>, <bos> and <unk> the most likely words at every step
        model.output.bias[list(NEVER_WRITTEN)] = 100.0
        model.output.bias[EOS] = -100.0
    for beams in (1, 3):
        words, _ = model.generate(frames, frame_mask, max_words=4, beam_size=beams)
        assert words.shape[1] == 5 and (words[:, -1] == EOS).all()
        assert not torch.isin(words[:, :-1], torch.tensor([PAD, BOS, EOS, UNK])).any()


def test_features_instead_of_frames_use_a_linear_encoder() -> None:
    model = Captioner(vocab_size=10, frame_shape=[40], frame_dim=16, hidden_size=16)
    output = model(
        torch.rand(2, 6, 40),
        torch.ones(2, 6, dtype=torch.bool),
        torch.full((2, 3), BOS),
        torch.ones(2, 3, dtype=torch.bool),
    )
    assert output.prediction.shape == (2, 3, 10) and math.isfinite(output.aux_losses["attention_reg"].item())


def test_a_video_shared_by_several_captions_gives_what_repeating_its_frames_gives() -> None:
    frames, frame_mask, words, word_mask = _batch()
    model = _model(temporal_encoder=True)
    index = torch.tensor([0, 0, 1])  # captions 0 and 1 describe video 0
    shared = model(frames[:2], frame_mask[:2], words, word_mask, video_index=index)
    repeated = model(frames[index], frame_mask[index], words, word_mask)
    torch.testing.assert_close(shared.prediction, repeated.prediction)
    torch.testing.assert_close(shared.aux_losses["attention_reg"], repeated.aux_losses["attention_reg"])


def test_the_bilstm_without_packing_computes_what_packing_computes() -> None:
    """The temporal encoder runs without ``pack_padded_sequence`` (which syncs with the host for its
    lengths): the same outputs and gradients, a sequence of no real frames included (it runs one, as
    packed)."""
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(5, 7, 6, dtype=torch.float64, requires_grad=True)
    mask = (torch.arange(7) < torch.tensor([[7], [3], [1], [0], [5]])).double()
    packed = nn.utils.rnn.pack_padded_sequence(
        x, mask.sum(1).clamp_min(1).long(), batch_first=True, enforce_sorted=False
    )
    want, _ = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=7)
    got = bidirectional_over_prefix(lstm, x, mask)
    torch.testing.assert_close(got, want)
    weights = torch.randn_like(want)
    want_grads = torch.autograd.grad((want * weights).sum(), [x, *lstm.parameters()])
    got_grads = torch.autograd.grad((got * weights).sum(), [x, *lstm.parameters()])
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)
