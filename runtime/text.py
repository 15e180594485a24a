"""Text as data: a sequence of int tokens 1..V written in a data file as characters.

In JSON, an int vector may be given as `{"alphabet": "abc...", "text": "..."}`: token k
is the k-th character of the alphabet (1-based, as every label in bgm). The alphabet
decodes what a language model generates and encodes a `--prompt`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.errors import DataError


def is_text(value: Any) -> bool:
    return isinstance(value, Mapping) and "alphabet" in value


def alphabet_of(name: str, value: Mapping[str, Any]) -> str:
    alphabet = value.get("alphabet")
    if not isinstance(alphabet, str) or not alphabet:
        raise DataError(f"data '{name}': \"alphabet\" must be a non-empty string")
    seen: dict[str, int] = {}
    for i, ch in enumerate(alphabet):
        if ch in seen:
            raise DataError(f"data '{name}': the alphabet has {ch!r} twice (at {seen[ch] + 1} "
                            f"and {i + 1})")
        seen[ch] = i
    unknown = sorted(set(value) - {"alphabet", "text"})
    if unknown:
        raise DataError(f"data '{name}': unknown key {unknown[0]!r} (a text is given as "
                        "{\"alphabet\": ..., \"text\": ...})")
    return alphabet


def encode(name: str, alphabet: str, text: Any, what: str = "text") -> list[int]:
    """Tokens 1..len(alphabet) of `text`; a DataError naming the first character that is
    not in the alphabet and its position."""
    if not isinstance(text, str):
        raise DataError(f"data '{name}': \"{what}\" must be a string")
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    for i, ch in enumerate(text):
        if ch not in index:
            raise DataError(f"data '{name}': {what} character {i + 1} ({ch!r}) is not in its "
                            f"alphabet")
    return [index[ch] for ch in text]


def decode(alphabet: str, tokens: Any) -> str:
    return "".join(alphabet[int(k) - 1] for k in tokens)


def encoded(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw data with texts replaced by their tokens, and each text's alphabet."""
    out, alphabets = dict(raw), {}
    for name, value in raw.items():
        if is_text(value):
            alphabets[name] = alphabet_of(name, value)
            out[name] = encode(name, alphabets[name], value.get("text", ""))
    return out, alphabets
