"""Text tokenizers: ``bert-base-uncased`` when it can be loaded, else a WordPiece trained here.

Both are held as a fast HF ``tokenizers.Tokenizer`` behind one small class,
:class:`TextTokenizer`, so the rest of the package sees the same ids contract either way:
``[PAD]`` = 0, texts encoded as ``[CLS] … [SEP]`` (bos … eos) and 0-padded.

Perplexity depends on the tokenizer, so its ``name`` is recorded beside every result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from storylib.data.sources import DataSourceError, hub_reachable, offline_requested
from storylib.io import atomic_write_json, atomic_write_text

BERT_NAME = "bert-base-uncased"
BERT_REPOS = ("bert-base-uncased", "google-bert/bert-base-uncased")
TOKENIZER_KINDS = ("auto", BERT_NAME, "trained")
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]"}
PAD_ID = 0  # batches are 0-padded; the models, losses and scores rely on it
TOKENIZER_FILE = "tokenizer.json"
METADATA_FILE = "text_tokenizer.json"


class TextTokenizer:
    """A fast tokenizer with the package's contract: bos … eos, truncated, pad id 0."""

    def __init__(self, tokenizer: Tokenizer, name: str) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.backend = tokenizer
        self.name = name
        ids = {role: tokenizer.token_to_id(token) for role, token in SPECIAL_TOKENS.items()}
        missing = [SPECIAL_TOKENS[role] for role, token_id in ids.items() if token_id is None]
        if missing:
            raise ValueError(f"tokenizer {name!r} lacks the special token(s) {', '.join(missing)}")
        if ids["pad"] != PAD_ID:
            raise ValueError(f"tokenizer {name!r} has [PAD] = {ids['pad']}; the package relies on pad id {PAD_ID}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids["pad"], ids["unk"], ids["bos"], ids["eos"]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def __repr__(self) -> str:
        return f"TextTokenizer(name={self.name!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str, max_length: int) -> list[int]:
        """``[bos] + word pieces + [eos]``, the pieces truncated so the whole fits ``max_length``."""
        if max_length < 2:
            raise ValueError(f"max_length must leave room for bos and eos, got {max_length}")
        pieces = self.backend.encode(text, add_special_tokens=False).ids[: max_length - 2]
        return [self.bos_id, *pieces, self.eos_id]

    def encode_batch(self, texts: list[str], max_length: int) -> np.ndarray:
        """Encode many texts at once into an int32 ``(len(texts), max_length)`` array, 0-padded."""
        if max_length < 2:
            raise ValueError(f"max_length must leave room for bos and eos, got {max_length}")
        encoded = np.full((len(texts), max_length), self.pad_id, dtype=np.int32)
        for row, encoding in enumerate(self.backend.encode_batch(list(texts), add_special_tokens=False)):
            ids = [self.bos_id, *encoding.ids[: max_length - 2], self.eos_id]
            encoded[row, : len(ids)] = ids
        return encoded

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: stops at the first eos, skips pad and bos, merges ``##`` pieces."""
        kept = []
        for token_id in (int(i) for i in ids):
            if token_id == self.eos_id:
                break
            if token_id not in (self.pad_id, self.bos_id):
                kept.append(token_id)
        return self.backend.decode(kept, skip_special_tokens=False)

    def save(self, folder: Path | str) -> Path:
        """Write ``tokenizer.json`` and the metadata file into ``folder`` (atomically)."""
        folder = Path(folder)
        atomic_write_text(folder / TOKENIZER_FILE, self.backend.to_str())
        atomic_write_json(folder / METADATA_FILE, {"name": self.name, "special_tokens": SPECIAL_TOKENS})
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "TextTokenizer":
        folder = Path(folder)
        metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), metadata["name"])


# --------------------------------------------------------------------------- building


# Continuation characters are moved into a private-use plane while training, see train_wordpiece.
CONTINUATION_OFFSET = 0xF0000


def _mark_continuations(word: str) -> str | None:
    """``"walks"`` → ``"w"`` + the other characters shifted into the private-use plane.

    ``None`` for words the shift cannot represent (characters outside the basic plane).
    """
    if any(ord(ch) >= 0x10000 for ch in word):
        return None
    return word[0] + "".join(chr(CONTINUATION_OFFSET + ord(ch)) for ch in word[1:])


def _wordpiece_token(marked: str) -> str:
    """A trained symbol back in WordPiece spelling: continuation pieces get the ``##`` prefix."""
    plain = "".join(chr(ord(ch) - CONTINUATION_OFFSET) if ord(ch) >= CONTINUATION_OFFSET else ch for ch in marked)
    return f"##{plain}" if ord(marked[0]) >= CONTINUATION_OFFSET else plain


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """A lower-casing WordPiece tokenizer trained on ``texts`` (special tokens get ids 0–3).

    HF's ``WordPieceTrainer`` is not deterministic (huggingface/tokenizers#1794: the ``##``
    pieces get ids in hash-map order, and ids break ties between equally frequent merges), so
    the same texts could give another vocabulary on the next run. Here HF's ``BpeTrainer``,
    whose symbols are all sorted, learns the merges on words whose non-initial characters are
    shifted into a private-use plane; the learned symbols are then spelt back as WordPiece
    pieces (``##`` for continuations). Same algorithm, same vocabulary every run.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    marked_words = []
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            marked = _mark_continuations(word)
            if marked is not None:
                marked_words.append(marked)
    special_tokens = [SPECIAL_TOKENS[role] for role in ("pad", "unk", "bos", "eos")]
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False)
    learner.train_from_iterator([" ".join(marked_words)], trainer=trainer)

    vocab = {token: index for index, token in enumerate(special_tokens)}
    for marked, _ in sorted(learner.get_vocab().items(), key=lambda item: item[1]):
        if marked not in vocab:
            vocab.setdefault(_wordpiece_token(marked), len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=SPECIAL_TOKENS["unk"], continuing_subword_prefix="##"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return TextTokenizer(tokenizer, f"wordpiece-trained-{vocab_size}")


def bert_cached() -> bool:
    """Whether ``bert-base-uncased`` has tokenizer files in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for repo in BERT_REPOS:
        for filename in ("tokenizer.json", "vocab.txt"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return True
    return False


def load_bert(timeout: float = 3.0) -> TextTokenizer | None:
    """``bert-base-uncased`` through transformers, local files first; ``None`` when unavailable.

    The hub is tried only when no offline switch is set and huggingface.co answers within
    ``timeout`` seconds, so this never waits on retries.
    """
    from transformers import AutoTokenizer

    attempts = [dict(local_files_only=True)]
    if not offline_requested() and hub_reachable(timeout):
        attempts.append(dict(local_files_only=False))
    for options in attempts:
        for repo in BERT_REPOS:
            try:
                loaded = AutoTokenizer.from_pretrained(repo, **options)
            except Exception:  # noqa: BLE001 - not cached / not reachable: try the next way
                continue
            backend = getattr(loaded, "backend_tokenizer", None) or getattr(loaded, "_tokenizer", None)
            if isinstance(backend, Tokenizer):
                return TextTokenizer(Tokenizer.from_str(backend.to_str()), BERT_NAME)
    return None


def resolve_tokenizer_kind(kind: str, timeout: float = 3.0) -> str:
    """``auto`` → ``bert-base-uncased`` when cached or the hub answers quickly, else ``trained``."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer {kind!r} is not one of {', '.join(TOKENIZER_KINDS)}")
    if kind != "auto":
        return kind
    return BERT_NAME if bert_cached() or hub_reachable(timeout) else "trained"


def build_tokenizer(kind: str, train_texts: Iterable[str], vocab_size: int, save_dir: Path | str | None = None) -> TextTokenizer:
    """The tokenizer of ``kind`` (``auto`` | ``bert-base-uncased`` | ``trained``), saved to ``save_dir``.

    ``trained`` learns a WordPiece vocabulary from ``train_texts`` only (pass the train
    split's descriptions, never validation or test text). ``auto`` uses BERT where it can be
    loaded and falls back to ``trained``.
    """
    resolved = resolve_tokenizer_kind(kind)
    tokenizer = load_bert() if resolved == BERT_NAME else None
    if tokenizer is None and kind == BERT_NAME:
        raise DataSourceError(
            "The bert-base-uncased tokenizer is not in the local Hugging Face cache and the hub cannot be "
            "reached (or offline mode is set). Download it once with network access, or use the tokenizer "
            "trained on the stories instead (data.tokenizer: trained, or auto)."
        )
    if tokenizer is None:
        tokenizer = train_wordpiece(train_texts, vocab_size)
    if save_dir is not None:
        tokenizer.save(save_dir)
    return tokenizer
