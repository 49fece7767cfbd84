"""Text tokenizers: the world's words, class names, and BPE (the `tokenizers` package) for user captions.

Each maps text to ids 0..vocab_size-1 and back, and serialises to JSON for the model checkpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from tessera.errors import CheckpointError, InputError
from tessera.world import grammar


class WorldTokenizer:
    """One id per word of the world's grammar; an unknown word is a PromptError naming it."""

    kind = "world"

    def __init__(self, words: Iterable[str] | None = None):
        self.words = list(words if words is not None else grammar.VOCAB)
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        tokens = grammar.tokenize(text)
        missing = [t for t in tokens if t not in self.index]
        if missing:
            raise grammar.PromptError(f"unknown word {missing[0]!r}")
        return [self.index[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "words": self.words}


class ClassTokenizer:
    """One id per class name (class-conditional generation); the text is the whole name, or the class's number
    when no class has that name."""

    kind = "classes"

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}

    @property
    def vocab_size(self) -> int:
        return len(self.names)

    def encode(self, text: str) -> list[int]:
        name = " ".join(text.split())
        if not name:
            raise InputError("empty prompt: give a class name")
        if name not in self.index and name.isascii() and name.isdigit() and int(name) < len(self.names):
            return [int(name)]
        if name not in self.index:
            shown = ", ".join(self.names[:8]) + (", ..." if len(self.names) > 8 else "")
            raise InputError(f"unknown class {name!r}; known classes: {shown}")
        return [self.index[name]]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.names[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "names": self.names}


class BPETokenizer:
    """Byte-level BPE trained on the user's captions with the `tokenizers` package."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        if not text.strip():
            raise InputError("empty prompt")
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tokenizer.to_str())}


TextTokenizer = WorldTokenizer | ClassTokenizer | BPETokenizer


def from_dict(data: dict) -> TextTokenizer:
    """Rebuild a text tokenizer from its `to_dict()`."""
    kind = data.get("kind")
    if kind == "world":
        return WorldTokenizer(data["words"])
    if kind == "classes":
        return ClassTokenizer(data["names"])
    if kind == "bpe":
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_str(json.dumps(data["tokenizer"])))
    raise CheckpointError(f"unknown text tokenizer kind {kind!r}")


def class_name(folder_name: str) -> str:
    """A folder name as a class name: 'golden_retriever' -> 'golden retriever'."""
    return " ".join(re.split(r"[_\s]+", folder_name.strip()))
