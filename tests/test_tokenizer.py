"""The text tokenizer contract: bos … eos, pad id 0, round trips, save/load, no network."""

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from storylib.data import tokenizer as tokenizer_module
from storylib.data.sources import DataSourceError
from storylib.data.tokenizer import TextTokenizer, build_tokenizer, train_wordpiece

TRAIN_TEXTS = [
    "Mara walks to the left of the quiet beach.",
    "Theo jumps over the red box near the window.",
    "The light dims as Mara and Theo meet in the center.",
    "A blue circle rolls slowly across the bright street.",
] * 5


@pytest.fixture(scope="module")
def trained() -> TextTokenizer:
    return train_wordpiece(TRAIN_TEXTS, vocab_size=120)


def test_special_ids_and_name(trained):
    assert trained.pad_id == 0
    assert (trained.unk_id, trained.bos_id, trained.eos_id) == (1, 2, 3)
    assert trained.name == "wordpiece-trained-120"
    assert 30 < trained.vocab_size <= 120


def test_encode_decode_round_trip_lowercases(trained):
    ids = trained.encode("Mara walks to the LEFT of the beach.", max_length=40)
    assert ids[0] == trained.bos_id and ids[-1] == trained.eos_id
    assert 0 not in ids
    assert trained.decode(ids) == "mara walks to the left of the beach."


def test_decode_stops_at_eos_and_skips_pad_and_bos(trained):
    ids = trained.encode("theo jumps", max_length=10)
    assert trained.decode([0, 0, *ids, 0, 0]) == "theo jumps"
    assert trained.decode(ids + trained.encode("never shown", 10)) == "theo jumps"


def test_unknown_characters_become_unk(trained):
    ids = trained.encode("zebra", max_length=10)
    assert trained.unk_id in ids


def test_encode_truncates_to_max_length_keeping_eos(trained):
    ids = trained.encode(" ".join(["mara walks"] * 30), max_length=8)
    assert len(ids) == 8 and ids[0] == trained.bos_id and ids[-1] == trained.eos_id
    with pytest.raises(ValueError, match="max_length"):
        trained.encode("x", max_length=1)


def test_encode_batch_matches_encode_and_pads_with_zero(trained):
    texts = ["mara walks", "the light dims as mara and theo meet in the center", ""]
    batch = trained.encode_batch(texts, max_length=12)
    assert batch.dtype == np.int32 and batch.shape == (3, 12)
    for row, text in zip(batch, texts):
        ids = trained.encode(text, 12)
        assert row[: len(ids)].tolist() == ids and not row[len(ids) :].any()
    assert batch[2, :2].tolist() == [trained.bos_id, trained.eos_id]


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "tok")
    loaded = TextTokenizer.load(tmp_path / "tok")
    assert loaded.name == trained.name and loaded.vocab_size == trained.vocab_size
    text = "Theo and Mara meet near the window."
    assert loaded.encode(text, 30) == trained.encode(text, 30)


def test_training_is_deterministic():
    first, second = train_wordpiece(TRAIN_TEXTS, 100), train_wordpiece(TRAIN_TEXTS, 100)
    assert first.backend.get_vocab() == second.backend.get_vocab()


def test_build_trained_saves_beside_the_cache(tmp_path):
    tokenizer = build_tokenizer("trained", TRAIN_TEXTS, 90, tmp_path / "tokenizer")
    assert tokenizer.name == "wordpiece-trained-90"
    assert TextTokenizer.load(tmp_path / "tokenizer").encode("mara", 5) == tokenizer.encode("mara", 5)


def test_auto_falls_back_to_trained_offline_without_bert(monkeypatch):
    # conftest sets the offline switches: no socket is opened and BERT is not cached.
    monkeypatch.setattr(tokenizer_module, "bert_cached", lambda: False)
    assert build_tokenizer("auto", TRAIN_TEXTS, 80).name == "wordpiece-trained-80"


def test_explicit_bert_without_cache_or_hub_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "load_bert", lambda timeout=3.0: None)
    with pytest.raises(DataSourceError, match="bert-base-uncased.*data.tokenizer: trained"):
        build_tokenizer("bert-base-uncased", TRAIN_TEXTS, 80)


def test_bert_wrapping_uses_the_backend_of_a_cached_fast_tokenizer(monkeypatch):
    """A stand-in for a cached bert-base-uncased: [PAD]=0 … [CLS]=101 style ids, no network."""
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "mara": 4, "walks": 5, "##s": 6, "walk": 7}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    fast = PreTrainedTokenizerFast(tokenizer_object=backend)
    calls = []

    def fake_from_pretrained(repo, **options):
        calls.append((repo, options))
        return fast

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", fake_from_pretrained)
    loaded = tokenizer_module.load_bert()
    assert calls == [("bert-base-uncased", {"local_files_only": True})]
    assert loaded.name == "bert-base-uncased" and loaded.pad_id == 0
    assert loaded.encode("Mara walks", 10) == [2, 4, 5, 3]
