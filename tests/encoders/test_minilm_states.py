"""Cached frozen MiniLM states (``recroute.encoders.minilm_states``): the cached path encodes as the plain
path does, with the real packaged all-MiniLM-L6-v2 (offline), and a fine-tune on cached states moves only
the top layers and encodes the same way through both paths.

Small on purpose: 8 real MMLU-Pro questions (one longer than MiniLM's 256 word pieces, so truncation is
exercised) and two short hand-written texts; one fine-tune of 2 Adam steps on 6 of them."""

from __future__ import annotations

import json
import re

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
    with pytest.raises(ValueError, match=r"text 0 \('a text never cached'\.\.\.\) is not among the MiniLM states \(in memory\)"):
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


@pytest.fixture
def spy_rows(monkeypatch):
    """Counts the rows the states route encodes (``minilm_states._encode_rows``), per call, with the depth."""
    from recroute.encoders import minilm_states

    calls: list[tuple[int, int]] = []
    real = minilm_states._encode_rows

    def spy(model, states, rows, depth, batch_size, n_threads):
        calls.append((len(rows), depth))
        return real(model, states, rows, depth, batch_size, n_threads)

    monkeypatch.setattr(minilm_states, "_encode_rows", spy)
    return calls


@pytest.mark.parametrize("n_layers, depth", [(1, 5), (2, 3)])
def test_states_route_goes_through_the_embedding_cache(states, model, texts, plain, spy_rows, tmp_path, monkeypatch,
                                                       n_layers, depth):
    """An untuned TunedMiniLMEncoder through the states (depths 3 and 5 cached): the six-layer vectors within ATOL,
    counted, written under the encoder's key, read back, and re-encoded after a damaged shard is discarded."""
    from recroute.encoders.cache import CacheWarning, EmbeddingCache, encode_cached_with_stats, text_key
    from recroute.encoders.minilm import MODEL_NAME
    from recroute.encoders.minilm_finetune import TunedMiniLMEncoder
    from recroute.encoders.minilm_states import states_encoder

    enc = TunedMiniLMEncoder(model, n_layers, f"{MODEL_NAME}-ft-test")

    def refuse(*args, **kwargs):
        raise AssertionError("ran all six layers instead of the states")

    monkeypatch.setattr(TunedMiniLMEncoder, "encode", refuse)
    route = states_encoder(enc, states, batch_size=4)
    X, stats = encode_cached_with_stats(enc, texts + texts[:2], cache_dir=tmp_path, encode_missing=route)
    assert (stats.n_texts, stats.n_unique, stats.n_cached, stats.n_encoded) == (12, 10, 0, 10)
    assert sum(n for n, _ in spy_rows) == 10 and {d for _, d in spy_rows} == {depth}  # deepest cached depth <= 6 - N
    np.testing.assert_allclose(X[:10], plain, atol=ATOL)
    np.testing.assert_array_equal(X[10:], X[:2])
    cache = EmbeddingCache.for_encoder(enc, tmp_path)
    (index,) = cache.directory.glob("*.json")  # the key the plain route uses: encoder's cache_key, sha256 of text
    assert cache.directory.name == enc.cache_key
    assert sorted(json.loads(index.read_text())["keys"]) == sorted(text_key(t) for t in texts)
    spy_rows.clear()
    Y, again = encode_cached_with_stats(enc, texts, cache_dir=tmp_path, encode_missing=route)
    assert (again.n_cached, again.n_encoded, spy_rows) == (10, 0, [])
    np.testing.assert_array_equal(Y, X[:10])
    npy = index.with_suffix(".npy")
    raw = bytearray(npy.read_bytes())
    raw[-5] ^= 0xFF
    npy.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match=f"{npy.stem}: {npy.name} is corrupted"):
        Z, fixed = encode_cached_with_stats(enc, texts, cache_dir=tmp_path, encode_missing=route)
    assert (fixed.n_cached, fixed.n_encoded) == (0, 10) and sum(n for n, _ in spy_rows) == 10
    np.testing.assert_allclose(Z, X[:10], atol=1e-6)


def test_bad_or_other_states_are_refused_naming_them(states, model, tmp_path):
    import torch

    from recroute.encoders.minilm import MODEL_NAME
    from recroute.encoders.minilm_finetune import TunedMiniLMEncoder
    from recroute.encoders.minilm_states import states_encoder
    from recroute.errors import SavedArtifactError

    folder = states.save(tmp_path / "states")
    loaded = FrozenStates.load(folder)
    assert loaded.path == folder
    other = fresh_model()
    with torch.no_grad():
        other[0].auto_model.encoder.layer[1].output.dense.bias.add_(0.1)  # a frozen layer: other states
    with pytest.raises(ValueError, match=f"bottom 3 layers differ from those the MiniLM states in {re.escape(str(folder))} came from"):
        states_encoder(TunedMiniLMEncoder(other, 2, f"{MODEL_NAME}-ft-other"), loaded)
    with pytest.raises(ValueError, match=f"tunes 6 layer.*the MiniLM states in {re.escape(str(folder))} hold depths \\[3, 5\\]"):
        states_encoder(TunedMiniLMEncoder(model, 6, f"{MODEL_NAME}-ft-all"), loaded)
    route = states_encoder(TunedMiniLMEncoder(model, 1, f"{MODEL_NAME}-ft-one"), loaded)
    with pytest.raises(ValueError, match=f"text 0 \\('not computed'...\\) is not among the MiniLM states in {re.escape(str(folder))}"):
        route(["not computed"])
    npy = folder / "states_5.npy"
    npy.write_bytes(npy.read_bytes()[:1000])  # truncated
    with pytest.raises(SavedArtifactError, match=f"{re.escape(str(npy))}: cannot read cached MiniLM states"):
        FrozenStates.load(folder)
    states.save(folder)
    np.save(folder / "lengths.npy", states.lengths[:-1])  # 9 lengths for 10 texts
    with pytest.raises(SavedArtifactError, match=f"{re.escape(str(folder))}: cannot read cached MiniLM states .*10 text keys for 9"):
        FrozenStates.load(folder)


def test_cli_fine_tune_with_frozen_states(tmp_path, monkeypatch, spy_rows):
    """`recroute encode --finetune minilm --frozen-states` on 20 MMLU-Pro questions: --no-cache encodes all 20 through
    the states and writes no embedding; then a cached run encodes 20 (found 0), a third finds 20 (encoded 0); the
    output equals the tuned encoder's six-layer encodings within ATOL; a damaged states file is named."""
    import recroute
    from typer.testing import CliRunner

    from recroute.cli.main import app
    from recroute.encoders import load_encoder
    from recroute.encoders.cache import EmbeddingCache
    from recroute.encoders.minilm_finetune import TunedMiniLMEncoder

    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(tmp_path / "encoders"))
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embeddings"))
    data = recroute.load_dataset("mmlu_pro").subset(prompts=np.arange(20), llms=[0, 1, 2])
    folder = data.save(tmp_path / "tiny")
    args = ["encode", str(folder), "--finetune", "minilm", "--layers", "1", "--frozen-states", "--max-steps", "2"]

    def run(name, *extra):
        out = tmp_path / f"{name}.npy"
        result = CliRunner().invoke(app, [*args, "--out", str(out), "--json", str(tmp_path / f"{name}.json"), *extra])
        assert result.exit_code == 0, result.output
        (row,) = json.loads((tmp_path / f"{name}.json").read_text())
        return row, np.load(out), result.output

    def refuse(*a, **k):
        raise AssertionError("the tuned encoder ran all six layers instead of the states")

    with monkeypatch.context() as patch:
        patch.setattr(TunedMiniLMEncoder, "encode", refuse)
        row, X_off, _ = run("off", "--no-cache", "--quiet")
        assert (row["n_prompts"], row["n_unique_texts"], row["n_from_cache"], row["n_encoded"]) == (20, 20, 0, 20)
        assert sum(n for n, _ in spy_rows) == 20 and {d for _, d in spy_rows} == {5}
        assert not (tmp_path / "embeddings").exists()  # --no-cache: no embedding written
        spy_rows.clear()
        row, X_on, output = run("on")
        assert (row["n_from_cache"], row["n_encoded"]) == (0, 20) and sum(n for n, _ in spy_rows) == 20
        assert "20 through the frozen states" in output
        spy_rows.clear()
        row, X_again, _ = run("again", "--quiet")
        assert (row["n_from_cache"], row["n_encoded"], spy_rows) == (20, 0, [])
    tuned = load_encoder(row["encoder_saved_to"])
    assert tuned.finetune["frozen_states"] == 256
    assert len(EmbeddingCache.for_encoder(tuned, tmp_path / "embeddings")) == 20
    np.testing.assert_allclose(X_on, X_off, atol=1e-6)
    np.testing.assert_array_equal(X_again, X_on)
    np.testing.assert_allclose(X_on, tuned.encode(data.texts), atol=ATOL)
    (store,) = (tmp_path / "encoders").glob("minilm-states-*")
    npy = store / "states_5.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad.npy"), "--quiet"])
    assert bad.exit_code == 2 and "cannot read cached MiniLM states" in bad.output and "Traceback" not in bad.output
    assert str(npy) in bad.output.replace("\n", "") and f"delete {store}" in bad.output.replace("\n", "")
    bad = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "static", "--frozen-states", "--quiet"])
    assert bad.exit_code != 0 and "--frozen-states is for --finetune minilm" in bad.output
