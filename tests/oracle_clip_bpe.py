"""Reference (oracle) for the tokenizer tests: the official IRRA tokenizer's behaviour.

A deliberately plain, slow re-statement of CLIP's published BPE algorithm, reproducing the
official IRRA variant exactly, quirks included:

* vocabulary: 256 byte symbols, the same with ``</w>``, the joined merges of
  ``lines[1 : 49152 - 256 - 2 + 1]`` except the last, then mask / start / end tokens;
* merge ranks over that *whole* slice (so the last merge can fire and its result has no id:
  ``KeyError``, e.g. on "jekyll");
* the official word regex, which matches ``<|startoftext|>`` and ``<|endoftext|>`` as
  special tokens.

It is written from the algorithm's description, not from ``irra.tokenizer``, and shares no
code with it.
"""

from __future__ import annotations

import gzip
import html

import ftfy
import regex


def byte_symbol_table() -> dict[int, str]:
    """Byte -> printable character, as listed in CLIP's description (ordered as CLIP's ids)."""
    keep = (
        list(range(33, 127))  # '!' .. '~'
        + list(range(161, 173))  # inverted exclamation .. not sign
        + list(range(174, 256))  # registered sign .. y with diaeresis
    )
    codes = list(keep)
    shifted = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    return {byte: chr(code) for byte, code in zip(keep, codes, strict=True)}


def get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    """All adjacent symbol pairs of a word."""
    pairs = set()
    previous = word[0]
    for symbol in word[1:]:
        pairs.add((previous, symbol))
        previous = symbol
    return pairs


class OfficialIrraBPE:
    """Slow, literal implementation of the official IRRA tokenizer."""

    def __init__(self, bpe_path: str) -> None:
        self.byte_table = byte_symbol_table()
        self.byte_inverse = {v: k for k, v in self.byte_table.items()}
        with gzip.open(bpe_path) as handle:
            lines = handle.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        symbols = list(self.byte_table.values())
        vocab = symbols + [s + "</w>" for s in symbols]
        for merge in merges[:-1]:
            vocab.append("".join(merge))
        vocab += ["<|mask|>", "<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.bpe_ranks = {merge: i for i, merge in enumerate(merges)}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"""
            r"""|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        while pairs:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                if first not in word[i:]:
                    new_word.extend(word[i:])
                    break
                j = word.index(first, i)
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        result = " ".join(word)
        self.cache[token] = result
        return result

    @staticmethod
    def clean(text: str) -> str:
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text))
        text = text.strip()
        text = regex.sub(r"\s+", " ", text)
        return text.strip().lower()

    def encode(self, text: str) -> list[int]:
        ids = []
        for token in regex.findall(self.pat, self.clean(text)):
            token = "".join(self.byte_table[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids

    def tokenize(self, text: str, context_length: int = 77) -> list[int]:
        """Padded ids as the official ``tokenize(caption, tokenizer, 77, truncate=True)``."""
        sot = self.encoder["<|startoftext|>"]
        eot = self.encoder["<|endoftext|>"]
        tokens = [sot] + self.encode(text) + [eot]
        if len(tokens) > context_length:
            tokens = tokens[:context_length]
            tokens[-1] = eot
        return tokens + [0] * (context_length - len(tokens))
