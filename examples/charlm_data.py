"""Writes charlm.json and charlm_test.json: text from the help topics that ship with
Python (pydoc_data, the text `help("if")` prints), printable ASCII only, as training and
held-out data for charlm.bgm. Run once; the JSON files are committed.

    python examples/charlm_data.py
"""
from __future__ import annotations

import json
import string
from pathlib import Path

TRAIN, TEST = 150_000, 10_000
HERE = Path(__file__).resolve().parent


def corpus() -> str:
    from pydoc_data.topics import topics  # noqa: PLC0415 - the stdlib's help text
    keep = set(string.printable) - set("\t\r\x0b\x0c")
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return "".join(ch for ch in text if ch in keep)


def main() -> None:
    text = corpus()
    train, test = text[:TRAIN], text[TRAIN:TRAIN + TEST]
    alphabet = "".join(sorted(set(train)))
    test = "".join(ch for ch in test if ch in alphabet)
    for name, part in (("charlm.json", train), ("charlm_test.json", test)):
        data = {"V": len(alphabet), "text": {"alphabet": alphabet, "text": part}}
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n")
        print(f"{name}: {len(part)} characters, alphabet of {len(alphabet)}")


if __name__ == "__main__":
    main()
