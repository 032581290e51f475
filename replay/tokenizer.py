"""A byte-level tokenizer: every UTF-8 byte is a token. No vocabulary file, nothing to download, any language.

pad 0, bos 1, eos 2, byte b -> b + 3; vocabulary 259
"""

from __future__ import annotations

PAD, BOS, EOS, OFFSET = 0, 1, 2, 3
VOCAB_SIZE = 256 + OFFSET


def encode(text: str) -> list[int]:
    """``[bos, bytes + 3 ..., eos]`` of one text event."""
    return [BOS, *(b + OFFSET for b in text.encode("utf-8")), EOS]


def decode(tokens: list[int]) -> list[str]:
    """The text events in a token row (pads and cut-off tails dropped; undecodable bytes replaced)."""
    texts, current = [], bytearray()
    inside = False
    for tok in tokens:
        if tok == BOS:
            current, inside = bytearray(), True
        elif tok == EOS and inside:
            texts.append(current.decode("utf-8", errors="replace"))
            inside = False
        elif tok >= OFFSET and inside:
            current.append(tok - OFFSET)
    if inside and current:
        texts.append(current.decode("utf-8", errors="replace"))
    return texts


def describe() -> dict[str, int | str]:
    """What the manifest records, so a reader can rebuild the tokenizer."""
    return {"type": "bytes", "pad": PAD, "bos": BOS, "eos": EOS, "offset": OFFSET, "vocab_size": VOCAB_SIZE}
