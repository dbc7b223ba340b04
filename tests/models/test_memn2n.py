import pytest
import torch
from torch.func import functional_call

from memtool.models.memn2n import MemN2N, position_encoding

VOCAB, MEMORY = 12, 6


def _inputs(batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    story = torch.randint(1, VOCAB, (batch, 5, 4), generator=generator)
    story[:, :, 3] = 0  # sentences of 3 words, padded to 4
    count = torch.tensor([5, 2, 1][:batch])
    for row, n in enumerate(count.tolist()):
        story[row, n:] = 0
    question = torch.randint(1, VOCAB, (batch, 3), generator=generator)
    return {"story": story, "memory_count": count, "question": question}


def _model(**options) -> MemN2N:
    torch.manual_seed(0)
    return MemN2N(vocab_size=VOCAB, memory_size=MEMORY, sentence_size=4, embedding_dim=8, **options).eval()


def test_position_encoding_matches_hand_computed_values() -> None:
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J), J = 4 words, d = 3
    pe = position_encoding(4, 3)
    assert pe.shape == (4, 3)
    assert pe[0, 0].item() == pytest.approx(0.75 - (1 / 3) * 0.5)  # j=1, k=1: 0.58333
    assert pe[1, 1].item() == pytest.approx(0.5)  # j=2, k=2: 0.5 - (2/3)·0
    assert pe[3, 2].item() == pytest.approx(1.0)  # j=4, k=3: 0 - 1·(1 - 2)
    assert pe[0, 2].item() == pytest.approx(0.75 - 0.5)  # j=1, k=3


def test_centered_position_encoding_matches_the_authors_formula() -> None:
    # l_kj = 1 + 4(k - (d+1)/2)(j - (J+1)/2)/(dJ), J = 5 (the data's longest sentence), d = 4
    pe = position_encoding(3, 4, "position_centered", sentence_size=5)
    assert pe.shape == (3, 4)
    assert pe[0, 0].item() == pytest.approx(1 + 4 * (1 - 2.5) * (1 - 3) / 20)  # j=1, k=1: 1.6
    assert pe[2, 3].item() == pytest.approx(1.0)  # j=3 is the middle of J=5: weight 1 for every k
    assert pe[1, 3].item() == pytest.approx(1 + 4 * (4 - 2.5) * (2 - 3) / 20)  # 0.7


def test_encoding_equals_the_explicit_weighted_sum_with_each_sentences_own_length() -> None:
    model = _model()
    words = torch.tensor([[3, 5, 7, 0, 0], [2, 4, 0, 0, 0]])
    encoded = model._encode(words, model._tables())  # (sentences, tables, d): every table at once
    assert encoded.shape == (2, len(model.embeddings), 8)
    for table, embedding in enumerate(model.embeddings):
        for row, length in enumerate([3, 2]):
            vectors = embedding.weight[words[row, :length]]  # (J, d)
            expected = (position_encoding(length, 8) * vectors).sum(0)
            torch.testing.assert_close(encoded[row, table], expected)


def test_attention_rows_sum_to_one_and_skip_empty_slots() -> None:
    output = _model()(**_inputs())
    assert output.trace["attention"].shape == (3, 3, 5)  # batch, hops, memories
    torch.testing.assert_close(output.trace["attention"].sum(-1), torch.ones(3, 3))
    assert output.trace["attention"][1, :, 2:].abs().max() == 0
    assert output.trace["attention"][2, :, 1:].abs().max() == 0


def test_empty_slots_take_the_mass_of_score_zero_slots_up_to_memory_size() -> None:
    """The authors' softmax runs over all memory_size slots; unused ones are all-nil, so score 0."""
    model = _model(empty_slots_in_softmax=True)
    inputs = _inputs()
    scores = torch.randn(3, 5)
    mask = torch.arange(5).unsqueeze(0) < inputs["memory_count"].unsqueeze(1)
    weights = model._softmax(scores, mask, model._empty_slot_scores(inputs["memory_count"], scores.dtype))
    for row, n in enumerate(inputs["memory_count"].tolist()):
        full = torch.cat([scores[row, :n], torch.zeros(MEMORY - n)]).softmax(0)
        torch.testing.assert_close(weights[row, :n], full[:n])
        assert weights[row, n:].abs().sum() == 0
    assert torch.all(model(**inputs).trace["attention"].sum(-1) < 1)


def test_linear_start_removes_the_softmax() -> None:
    model = _model()
    model.set_mode("linear_start")
    attention = model(**_inputs()).trace["attention"]
    assert not torch.allclose(attention.sum(-1), torch.ones(3, 3))
    assert attention[1, :, 2:].abs().max() == 0  # empty slots still read nothing
    model.set_mode(None)
    torch.testing.assert_close(model(**_inputs()).trace["attention"].sum(-1), torch.ones(3, 3))


@pytest.mark.parametrize(
    "option",
    [
        {"sentence_encoding": "bow"},
        {"sentence_encoding": "position_centered"},
        {"temporal_encoding": False},
        {"match": "cosine"},
        {"match": "mlp"},
        {"answer": "mlp"},
        {"weight_tying": "layerwise"},
        {"hops": 1},
        {"empty_slots_in_softmax": True},
    ],
)
def test_each_option_changes_the_computation(option: dict) -> None:
    inputs = _inputs()
    base = _model()(**inputs).prediction
    changed = _model(**option)(**inputs).prediction
    assert changed.shape == base.shape
    assert not torch.allclose(base, changed)


def test_random_noise_shifts_time_indices_only_in_training() -> None:
    model = _model(random_noise=0.5)
    count = torch.tensor([6, 3, 1, 6])
    model.eval()
    plain = model._time_index(count, 6, model._noise(4, None))  # None: no noise out of training
    assert plain[0].tolist() == [5, 4, 3, 2, 1, 0]  # most recent sentence = 0 (reverse order)
    assert plain[1, :3].tolist() == [2, 1, 0]
    model.train()
    rows = model.temporal[0].shape[0]
    assert rows == 6 + 3
    torch.manual_seed(1)
    draws = [model._time_index(count, 6, model._noise(4, None)) for _ in range(20)]
    assert any(not torch.equal(d[:, :1], plain[:, :1]) for d in draws)
    for noisy in draws:
        for row, n in enumerate(count.tolist()):
            times = noisy[row, :n]
            assert times.min() >= 0 and times.max() < rows
            assert torch.all(times[:-1] > times[1:])  # order kept: older sentences are further back
            assert times.max() <= n - 1 + -(-n // 2)  # at most ceil(0.5·n) blanks inserted


def test_nil_word_stays_zero_under_training_even_when_tied_to_the_answer_layer() -> None:
    model = _model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        output = model(**_inputs())
        loss = torch.nn.functional.cross_entropy(output.prediction, torch.tensor([1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for table in model.embeddings:
        assert table.weight[0].abs().max() == 0
    assert torch.all(model(**_inputs()).prediction.argmax(-1) != 0)


@pytest.mark.parametrize(
    "option", [{}, {"match": "mlp", "answer": "mlp"}, {"weight_tying": "layerwise", "match": "cosine"}]
)
def test_gradients_match_finite_differences(option: dict) -> None:
    model = _model(**option).double()
    params = {name: p.detach() for name, p in model.named_parameters()}
    inputs = _inputs()
    target = torch.tensor([1, 2, 3])

    def loss_of(word_rows: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        # row 0, the nil word, is excluded by design (padding_idx): its gradient is zero, not numerical
        embedding = torch.cat([torch.zeros_like(word_rows[:1]), word_rows])
        replaced = {**params, "embeddings.1.weight": embedding, "temporal.0": temporal}
        logits = functional_call(model, replaced, kwargs=inputs).prediction
        return torch.nn.functional.cross_entropy(logits, target)

    embedding = params["embeddings.1.weight"][1:].clone().requires_grad_()
    temporal = params["temporal.0"].clone().requires_grad_()
    assert torch.autograd.gradcheck(loss_of, (embedding, temporal), eps=1e-6, atol=1e-5)
