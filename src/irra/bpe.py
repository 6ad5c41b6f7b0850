"""CLIP's byte-level BPE tokenizer with IRRA's ``<|mask|>`` token, without PyTorch.

This module needs only ``ftfy``, ``regex`` and ``numpy``, so deployments without a training stack
(the ONNX engine) tokenize with it; :mod:`irra.tokenizer` adds the ``torch`` API on top.

Token ids are those of the official IRRA code: byte tokens (0-255), byte tokens with the
end-of-word marker ``</w>`` (256-511), then CLIP's merges in file order *without the last
one* (512-49404), then ``<|mask|>`` = 49405, ``<|startoftext|>`` = 49406 and
``<|endoftext|>`` = 49407. Padding is 0. Text is cleaned as in CLIP: ``ftfy.fix_text``, HTML
unescaped twice, whitespace runs collapsed to one space, stripped and lower-cased; it is then
split into words (runs of letters, single digits, the English contractions ``'s 't 're 've
'm 'll 'd`` and runs of other non-space symbols) and each word is BPE-encoded.

Differences from the official IRRA tokenizer (deliberate):

* **Special-token strings typed in the text are ordinary text.** The official regex matches
  the literal strings ``<|startoftext|>`` and ``<|endoftext|>`` and turns them into the
  special ids, so a user (or a caption) could inject start/end markers into a sequence.
  Here they are tokenized like any other text (``<|``, ``startoftext``, ``|>``); the same
  already held for ``<|mask|>`` in the official code. Special ids are only ever added by
  :func:`tokenize` (start/end) or by the MLM masking (mask). Consequently our ids equal the
  official ones for every text whose cleaned, lower-cased form does not contain the literal
  ``<|startoftext|>`` or ``<|endoftext|>``.
* **No crash on the dropped merge.** IRRA drops CLIP's last merge (``jeky`` + ``ll</w>``)
  from the vocabulary to make room for ``<|mask|>`` but keeps it among the merge ranks, so
  the official tokenizer raises ``KeyError`` on "jekyll". Here only merges whose result is
  in the vocabulary are used, so such words become sub-word tokens that decode back to the
  word ("jekyll" -> ``jeky`` + ``ll</w>``).
  Every other word is unaffected: the last merge has the highest rank, so a word whose
  encoding never applies it encodes the same with or without it.

Example:
    >>> ids = token_ids(["a woman in a red coat"])  # (1, 77) int64 numpy array
    >>> default_tokenizer().decode(ids[0].tolist())
    '<|startoftext|>a woman in a red coat <|endoftext|>'
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import ftfy
import numpy as np
import regex

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

PAD_ID = 0
MASK_ID = 49405
SOT_ID = 49406
EOT_ID = 49407
VOCAB_SIZE = 49408

MASK_TOKEN = "<|mask|>"
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
# Merges used for the vocabulary: file lines 1 .. 48893 (line 0 is a header). IRRA also reads
# line 48894 (the last merge of CLIP's vocabulary) but has no room for its result.
_NUM_MERGES = VOCAB_SIZE - 512 - 3
_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CACHE_LIMIT = 500_000
_WHITESPACE = regex.compile(r"\s+")
# Text that ftfy.fix_text and html.unescape leave alone: printable ASCII, tab and line breaks.
_PLAIN_ASCII = regex.compile(r"[\t\n\r\x20-\x25\x27-\x7e]*")


def default_bpe_path() -> Path:
    """Path of CLIP's BPE merges file shipped in the installed ``open_clip`` package.

    The package is located without importing it (importing ``open_clip`` is slow).

    Raises:
        FileNotFoundError: if ``open_clip_torch`` is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / BPE_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"cannot find {BPE_FILENAME}: it ships with the 'open_clip_torch' package "
        f"(searched {locations or 'nowhere: open_clip is not installed'}). "
        "Install it with `pip install open_clip_torch` or pass bpe_path=... explicitly."
    )


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte order, to
    the code points 256, 257, ... The dict's insertion order is the byte-token id order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\u00a1"), ord("\u00ac") + 1),
        *range(ord("\u00ae"), ord("\u00ff") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean_text(text: str) -> str:
    """CLIP's text cleaning: ftfy fix, HTML unescape (twice), collapse whitespace, lower-case.

    Plain printable ASCII without ``&`` skips ftfy, which leaves such text unchanged (up to
    line breaks, which become spaces anyway); this makes cleaning about twice as fast.
    """
    if not (text.isascii() and _PLAIN_ASCII.fullmatch(text)):
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text.strip()).strip().lower()


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path}: cannot read as a gzip-compressed UTF-8 BPE merges file ({exc}); "
            f"pass the {BPE_FILENAME} shipped with open_clip_torch"
        ) from exc
    # +1: IRRA's slice also takes the merge whose result has no vocabulary slot.
    body = lines[1 : 1 + _NUM_MERGES + 1]
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate(body, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(
                f"{path}, line {lineno}: expected a merge 'LEFT RIGHT', got {line!r}; "
                f"pass the {BPE_FILENAME} shipped with open_clip_torch"
            )
        merges.append((parts[0], parts[1]))
    if len(merges) < _NUM_MERGES:
        raise ValueError(
            f"{path}: has {len(merges)} merges, need at least {_NUM_MERGES}; "
            f"pass the {BPE_FILENAME} shipped with open_clip_torch"
        )
    return merges


class Tokenizer:
    """CLIP BPE with IRRA's ids (see the module docstring for the exact vocabulary).

    Args:
        bpe_path: the gzip-compressed merges file; default: the one shipped with open_clip.

    Encoded words are cached per instance, so encoding a dataset's captions is cheap after the
    first occurrence of each word. Instances are picklable (the cache is not pickled).
    """

    def __init__(self, bpe_path: str | os.PathLike[str] | None = None) -> None:
        path = default_bpe_path() if bpe_path is None else Path(bpe_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"BPE merges file {path} does not exist; pass the {BPE_FILENAME} shipped "
                "with open_clip_torch (or leave bpe_path unset to find it automatically)"
            )
        self.bpe_path = path
        self._byte_encoder = bytes_to_unicode()
        self._byte_decoder = {char: byte for byte, char in self._byte_encoder.items()}
        merges = _read_merges(path)
        vocab = list(self._byte_encoder.values())
        vocab += [char + "</w>" for char in vocab]
        vocab += [left + right for left, right in merges[:_NUM_MERGES]]
        vocab += [MASK_TOKEN, SOT_TOKEN, EOT_TOKEN]
        if len(vocab) != VOCAB_SIZE or len(set(vocab)) != VOCAB_SIZE:
            raise ValueError(f"{path}: does not yield {VOCAB_SIZE} distinct tokens")
        self._encoder = {token: index for index, token in enumerate(vocab)}
        self._decoder = vocab
        # Only merges whose result has an id: this drops IRRA's orphan last merge.
        self._ranks = {
            pair: rank for rank, pair in enumerate(merges) if pair[0] + pair[1] in self._encoder
        }
        self._word_re = regex.compile(_WORD_PATTERN, regex.IGNORECASE)
        self._cache: dict[str, tuple[int, ...]] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def _bpe(self, word: str) -> tuple[int, ...]:
        """Ids of one byte-encoded word: repeatedly apply the lowest-ranked adjacent merge."""
        symbols = [*word[:-1], word[-1] + "</w>"]
        ranks = self._ranks
        missing = len(ranks) + 1
        while len(symbols) > 1:
            best_rank, best_left, best_right = missing, "", ""
            for left, right in zip(symbols[:-1], symbols[1:], strict=True):
                rank = ranks.get((left, right), missing)
                if rank < best_rank:
                    best_rank, best_left, best_right = rank, left, right
            if best_rank == missing:
                break
            merged: list[str] = []
            i, n = 0, len(symbols)
            while i < n:
                if i + 1 < n and symbols[i] == best_left and symbols[i + 1] == best_right:
                    merged.append(best_left + best_right)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(self._encoder[symbol] for symbol in symbols)

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens (special-token strings are plain text)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        cache = self._cache
        for word in self._word_re.findall(clean_text(text)):
            word_ids = cache.get(word)
            if word_ids is None:
                encoded = "".join(self._byte_encoder[b] for b in word.encode("utf-8"))
                word_ids = self._bpe(encoded)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[word] = word_ids
            ids.extend(word_ids)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids: padding (0) is skipped, special ids appear as their strings.

        Word ends become single spaces and trailing space is stripped; invalid UTF-8 (a
        sequence cut inside a character) is replaced by U+FFFD.

        Args:
            ids: (L,) ints: a list, or one row of :func:`token_ids` / ``irra.tokenize`` (a 1-D
                numpy array or tensor).
        """
        shape = getattr(ids, "shape", None)
        if shape is not None:
            if len(shape) != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, got shape {tuple(shape)}")
            ids = ids.tolist()  # type: ignore[attr-defined]
        pieces: list[str] = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == PAD_ID:
                continue
            if not 0 <= token_id < VOCAB_SIZE:
                raise ValueError(f"token id {token_id} is outside [0, {VOCAB_SIZE})")
            pieces.append(self._decoder[token_id])
        data = bytes(self._byte_decoder[char] for char in "".join(pieces))
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def __call__(
        self, texts: str | Sequence[str], context_length: int = 77, truncate: bool = True
    ) -> torch.Tensor:
        """Same as :func:`irra.tokenizer.tokenize` with this tokenizer: (N, L) torch.long.

        Needs PyTorch; :func:`token_ids` gives the same ids as a numpy array without it.
        """
        from irra.tokenizer import tokenize

        return tokenize(texts, context_length, truncate, tokenizer=self)


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """The shared tokenizer built from open_clip's vocabulary file (built once)."""
    return Tokenizer()


def token_ids(
    texts: str | Sequence[str],
    context_length: int = 77,
    truncate: bool = True,
    *,
    tokenizer: Tokenizer | None = None,
) -> np.ndarray:
    """Token ids ``[SOT] + BPE + [EOT]``, zero padded, as IRRA feeds the text encoder.

    Args:
        texts: one caption or a sequence of captions.
        context_length: L, the number of positions (77 for CLIP).
        truncate: cut longer captions to L tokens with EOT forced into the last slot; if
            False, a caption longer than L raises ValueError.
        tokenizer: defaults to :func:`default_tokenizer`.

    Returns:
        (N, L) int64 numpy array; N = 1 for a single string.
    """
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (SOT and EOT), got {context_length}")
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = default_tokenizer() if tokenizer is None else tokenizer
    result = np.zeros((len(texts), context_length), dtype=np.int64)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{row}] is a {type(text).__name__}, expected str")
        ids = [SOT_ID, *tokenizer.encode(text), EOT_ID]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(
                    f"texts[{row}] ({text[:40]!r}...) has {len(ids)} tokens with SOT/EOT, more "
                    f"than context_length={context_length}; shorten it, raise context_length "
                    "or pass truncate=True"
                )
            ids = ids[:context_length]
            ids[-1] = EOT_ID
        result[row, : len(ids)] = ids
    return result
