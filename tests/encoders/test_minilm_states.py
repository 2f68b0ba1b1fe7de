"""Cached frozen MiniLM states (``recroute.encoders.minilm_states``): the cached path encodes as the plain
path does, with the real packaged all-MiniLM-L6-v2 (offline), and a fine-tune on cached states moves only
the top layers and encodes the same way through both paths.

Small on purpose: 8 real MMLU-Pro questions (one longer than MiniLM's 256 word pieces, so truncation is
exercised) and two short hand-written texts; one fine-tune of 2 Adam steps on 6 of them."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.encoders.minilm_finetune import fresh_model, layer_prefixes
from recroute.encoders.minilm_states import FrozenStates, compute_states, encode_states, top_forward

ATOL = 5e-4  # float16 states: measured 4e-5 to 6e-5 on MMLU-Pro questions


@pytest.fixture(scope="module")
def texts():
    import recroute
    from recroute.encoders.embed import dataset_texts

    data = recroute.load_dataset("mmlu_pro")
    all_texts = dataset_texts(data)
    lengths = np.array([len(t) for t in all_texts[:400]])
    longest = int(np.argmax(lengths))  # > 256 word pieces: truncated by the model
    return [all_texts[i] for i in range(7)] + [all_texts[longest], "hello", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def model():
    return fresh_model()


@pytest.fixture(scope="module")
def states(model, texts):
    return compute_states(model, texts, [3, 5], batch_size=4)


@pytest.fixture(scope="module")
def plain(texts):
    from recroute.encoders.minilm import MiniLMEncoder

    return MiniLMEncoder().encode(texts)


def test_ragged_layout_holds_each_texts_real_tokens(states, model, texts):
    # "hello" is [CLS] hello [SEP]: 3 word pieces; the long question is cut at the model's 256
    assert states.lengths[texts.index("hello")] == 3
    assert states.lengths.max() == model.max_seq_length == 256
    assert states.offsets[-1] == states.lengths.sum() == states.states[3].shape[0]
    assert states.states[3].dtype == np.float16 and states.states[3].shape[1] == 384
    assert list(states.rows_of(["hello", texts[0]])) == [texts.index("hello"), 0]
    with pytest.raises(ValueError, match="no cached MiniLM states"):
        states.rows_of(["a text never cached"])


@pytest.mark.parametrize("depth", [3, 5])
def test_cached_path_encodes_as_the_plain_path(states, model, plain, depth):
    X = encode_states(model, states, depth=depth, batch_size=3)
    assert X.shape == plain.shape and X.dtype == np.float32
    np.testing.assert_allclose(X, plain, atol=ATOL)
    assert (X * plain).sum(1).min() > 0.99999


def test_padding_does_not_change_a_texts_encoding(states, model, texts):
    # "hello" alone (no padding) and beside the 256-piece question (253 padded positions)
    i, j = texts.index("hello"), int(np.argmax(states.lengths))
    alone = top_forward(model, *states.batch([i], 5), depth=5).detach().numpy()
    padded = top_forward(model, *states.batch([i, j], 5), depth=5).detach().numpy()
    hidden, mask = states.batch([i, j], 5)
    assert hidden.shape == (2, 256, 384) and mask[0].sum() == 3 and float(hidden[0, 3:].abs().sum()) == 0.0
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-6)


def test_saved_states_load_memory_mapped_and_equal(states, tmp_path, model):
    folder = states.save(tmp_path / "states")
    back = FrozenStates.load(folder)
    assert back.depths == [3, 5] and back.keys == states.keys and back.max_length == 256
    assert isinstance(back.states[5], np.memmap)
    np.testing.assert_array_equal(back.states[5], states.states[5])
    np.testing.assert_array_equal(encode_states(model, back, [0, 1], depth=5), encode_states(model, states, [0, 1], depth=5))


def test_states_refuse_a_model_with_other_frozen_weights(states, model):
    import torch

    other = fresh_model()
    with torch.no_grad():
        other[0].auto_model.encoder.layer[0].output.dense.bias.add_(0.1)  # a frozen (bottom) layer changed
    with pytest.raises(ValueError, match="bottom 3 layers differ"):
        encode_states(other, states, depth=3)
    with torch.no_grad():
        model_top = fresh_model()
        model_top[0].auto_model.encoder.layer[5].output.dense.bias.add_(0.1)  # a top layer: allowed
    encode_states(model_top, states, [0], depth=3)


def test_fine_tune_on_states_moves_only_the_top_layers_and_encodes_through_both_paths(states, texts, model):
    from recroute.encoders.minilm_finetune import finetune_minilm

    rng = np.random.default_rng(0)
    train = texts[:6]
    Y = (rng.random((6, 3)) > 0.5).astype(np.float32)
    tuned = finetune_minilm(train, Y, n_layers=2, states=states, n_threads=1, max_steps=2, batch_size=3,
                            n_clusters=2, top_k=1, last_k=1, n_negatives=1, lr=1e-3)
    assert tuned.finetune["frozen_states"] == 256 and tuned.finetune["steps"] == 2
    top = layer_prefixes(tuned.model, 2)
    base, after = model.state_dict(), tuned.model.state_dict()
    moved = sorted(k for k in base if not np.array_equal(base[k].numpy(), after[k].numpy()))
    assert moved and all(k.startswith(tuple(top)) for k in moved)
    # the states at depth 3 feed layer 3 (frozen, run each step) and the tuned layers 4 and 5
    X_cached = encode_states(tuned.model, states, depth=3)
    X_plain = tuned.encode(texts)
    np.testing.assert_allclose(X_cached, X_plain, atol=ATOL)
    assert not np.allclose(X_plain, encode_states(model, states, depth=3), atol=1e-3)  # it did move
    with pytest.raises(ValueError, match="at most 4 layers"):
        finetune_minilm(train, Y, n_layers=2, states=FrozenStates({5: states.states[5]}, states.lengths, states.keys,
                                                                   256, {5: states.fingerprints[5]}), max_steps=1)


def test_dataset_fine_tune_on_stored_states_fills_the_embedding_cache_the_protocol_reads(tmp_path, monkeypatch):
    """20 MMLU-Pro questions: states in the artefact store (computed once, then reused), a 1-layer fine-tune on
    RouterEval's training part (16 prompts), its encodings through the states written to the embedding cache,
    and ``embed_dataset(data, FOLDER)`` / ``FOLDER+lexical`` reading them (no six-layer pass)."""
    import recroute
    from recroute.encoders import embed_dataset, load_encoder
    from recroute.encoders.embed import dataset_texts
    from recroute.encoders.minilm_finetune import finetune_minilm_for_dataset
    from recroute.encoders.minilm_states import cache_tuned_embeddings, states_for_texts

    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(tmp_path / "encoders"))
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embeddings"))
    data = recroute.load_dataset("mmlu_pro").subset(prompts=np.arange(20), llms=[0, 1, 2])
    texts = dataset_texts(data)
    S = states_for_texts(texts, [5])
    assert len(S) == 20 and S.depths == [5]
    again = states_for_texts(texts, [5])  # reused from the store: memory-mapped, not recomputed
    assert isinstance(again.states[5], np.memmap)
    tuned = finetune_minilm_for_dataset(data, n_layers=1, states=S, max_steps=2, epochs=2, n_clusters=2)
    assert tuned.finetune["n_train"] == 16 and tuned.finetune["frozen_states"] == 256
    X = cache_tuned_embeddings(tuned, S, texts)
    np.testing.assert_allclose(X, tuned.encode(texts), atol=ATOL)
    folder = str(tuned.path)

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again instead of reading the embedding cache")

    monkeypatch.setattr(type(tuned), "encode", refuse)
    np.testing.assert_array_equal(embed_dataset(data, folder), X)
    both = embed_dataset(data, f"{folder}+lexical")
    np.testing.assert_array_equal(both[:, :384], X)
    assert load_encoder(folder).name == tuned.name


def test_cli_fine_tune_with_frozen_states(tmp_path, monkeypatch):
    """`recroute encode --finetune minilm --frozen-states`: the output equals the tuned encoder's plain encodings
    within the float16 tolerance, and every prompt came from the cache the states filled."""
    import json

    import recroute
    from typer.testing import CliRunner

    from recroute.cli.main import app
    from recroute.encoders import load_encoder

    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(tmp_path / "encoders"))
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embeddings"))
    data = recroute.load_dataset("mmlu_pro").subset(prompts=np.arange(20), llms=[0, 1, 2])
    folder = data.save(tmp_path / "tiny")
    result = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "minilm", "--layers", "1", "--frozen-states",
                                      "--max-steps", "2", "--out", str(tmp_path / "t.npy"), "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["n_from_cache"] == row["n_prompts"] == 20 and row["n_encoded"] == 0
    tuned = load_encoder(row["encoder_saved_to"])
    assert tuned.finetune["frozen_states"] == 256
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), tuned.encode(data.texts), atol=ATOL)
    bad = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "static", "--frozen-states", "--quiet"])
    assert bad.exit_code != 0 and "--frozen-states is for --finetune minilm" in bad.output
