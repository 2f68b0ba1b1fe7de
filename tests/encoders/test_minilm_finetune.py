"""Fine-tuning MiniLM's top layers with RouterDC's losses (``recroute encode --finetune minilm``): only
those layers move, the folder is safe and loads as an encoder (load_encoder, get_encoder(folder), a
bundle), and damage is caught.

Small on purpose: 20 real MMLU-Pro questions (16 in RouterEval's training part) × 3 LLMs, one layer,
two Adam steps (two epochs of one batch); one fine-tune (through the CLI) serves every test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recroute.encoders import get_encoder, load_encoder
from recroute.encoders.minilm_finetune import TunedMiniLMEncoder, fresh_model, layer_prefixes
from recroute.errors import SavedArtifactError


@pytest.fixture(scope="module")
def tuned_by_cli(tmp_path_factory):
    """(row of `recroute encode --json`, the dataset, the tmp folder) after one CLI fine-tune."""
    from typer.testing import CliRunner

    import recroute
    from recroute.cli.main import app

    tmp = tmp_path_factory.mktemp("minilm_ft")
    patch = pytest.MonkeyPatch()
    patch.setenv("RECROUTE_ENCODER_CACHE", str(tmp / "encoders"))
    patch.setenv("RECROUTE_CACHE", str(tmp / "embeddings"))
    data = recroute.load_dataset("mmlu_pro").subset(prompts=np.arange(20), llms=[0, 1, 2])
    folder = data.save(tmp / "tiny")
    result = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "minilm", "--layers", "1", "--epochs", "2", "--max-steps", "2",
                                      "--out", str(tmp / "tuned.npy"), "--json", "-", "--quiet"])
    patch.undo()
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    return row, data, tmp


def test_cli_fine_tunes_on_training_prompts_only_and_encodes(tuned_by_cli):
    row, data, tmp = tuned_by_cli
    assert row["encoder"].startswith("all-MiniLM-L6-v2-ft-") and row["encoder_saved_to"].startswith(str(tmp / "encoders"))
    tuned = load_encoder(row["encoder_saved_to"])
    assert isinstance(tuned, TunedMiniLMEncoder)
    assert tuned.finetune["steps"] == 2 and tuned.finetune["n_train"] == 16  # RouterEval's training part of 20
    X = np.load(tmp / "tuned.npy")
    np.testing.assert_allclose(X, tuned.encode(data.texts), atol=1e-5)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)


def test_only_the_top_layers_move(tuned_by_cli):
    tuned = load_encoder(tuned_by_cli[0]["encoder_saved_to"])
    top = layer_prefixes(tuned.model, 1)
    assert len(top) == 1 and top[0].endswith("encoder.layer.5.")
    base, after = fresh_model().state_dict(), tuned.model.state_dict()
    moved = sorted(k for k in base if not np.array_equal(base[k].numpy(), after[k].numpy()))
    assert moved and all(k.startswith(top[0]) for k in moved)
    texts = tuned_by_cli[1].texts[:4]
    assert not np.array_equal(tuned.encode(texts), get_encoder("minilm").encode(texts))


def test_saved_folder_loads_everywhere_and_refuses_damage(tuned_by_cli, tmp_path):
    import shutil

    row, data, _ = tuned_by_cli
    folder = shutil.copytree(row["encoder_saved_to"], tmp_path / "ft")
    spec = json.loads((folder / "encoder.json").read_text())
    assert spec["type"] == "minilm-ft" and spec["n_layers"] == 1
    assert {"encoder.json", "layers.npz"} <= {p.name for p in folder.iterdir()}
    tuned = load_encoder(folder)
    with np.load(folder / "layers.npz", allow_pickle=False) as npz:
        assert npz.files and all(k.startswith(layer_prefixes(tuned.model, 1)[0]) for k in npz.files)
        arrays = {k: npz[k] for k in npz.files}
    np.testing.assert_allclose(get_encoder(str(folder)).encode(data.texts[:3]), tuned.encode(data.texts[:3]), atol=1e-6)
    with pytest.raises(ValueError, match="fine-tuned MiniLM"):
        get_encoder(tuned.name)  # a name alone cannot say which tuning
    key = sorted(arrays)[0]
    arrays[key] = arrays[key] + 1.0
    np.savez(folder / "layers.npz", **arrays)
    with pytest.raises(SavedArtifactError, match="fingerprint"):
        load_encoder(folder)


def test_a_bundle_routes_texts_with_the_tuned_minilm(tuned_by_cli, tmp_path):
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    row, data, _ = tuned_by_cli
    tuned = load_encoder(row["encoder_saved_to"])
    router = KNNRouter(k=3).fit(data.dense(np.nan), tuned.encode(data.texts))
    RoutingBundle.build(router, tuned).save(tmp_path / "bundle")
    bundle = RoutingBundle.load(tmp_path / "bundle")
    assert bundle.encoder.name == tuned.name
    got = bundle.route_texts(data.texts[:2])
    want = router.route(tuned.encode(data.texts[:2]))[0][:, 0]
    assert [d.llm for d in got] == [bundle.llm_names[i] for i in want]
