"""Tests for irra.tokenizer against an independent re-implementation of the official tokenizer."""

from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
import random

import pytest
import regex
import torch
from oracle_clip_bpe import OfficialIrraBPE
from test_data_support import REAL_CUHK_VAL, REAL_CUHK_VAL_ABSENT

from irra import tokenizer as tok
from irra.tokenizer import Tokenizer, default_bpe_path, default_tokenizer, tokenize

VAL_JSON = REAL_CUHK_VAL


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def oracle() -> OfficialIrraBPE:
    return OfficialIrraBPE(str(default_bpe_path()))


@pytest.fixture(scope="module")
def merge_lines() -> list[str]:
    with gzip.open(default_bpe_path()) as handle:
        return handle.read().decode("utf-8").split("\n")


@pytest.fixture(scope="module")
def val_captions() -> list[str]:
    if not VAL_JSON.is_file():
        pytest.skip(REAL_CUHK_VAL_ABSENT)
    entries = json.loads(VAL_JSON.read_text(encoding="utf-8"))
    return [caption for entry in entries for caption in entry["captions"]]


def without_spaces(text: str) -> str:
    return regex.sub(r"\s+", "", text)


def test_ids_equal_official_for_every_val_caption(tokenizer, oracle, val_captions):
    assert len(val_captions) == 6158
    ours = tokenize(val_captions, tokenizer=tokenizer)
    expected = torch.tensor([oracle.tokenize(caption) for caption in val_captions])
    mismatched = (ours != expected).any(dim=1).nonzero().flatten().tolist()
    assert not mismatched, [val_captions[i] for i in mismatched[:5]]


def test_round_trip_restores_cleaned_text_of_val_captions(tokenizer, val_captions):
    for caption in val_captions:
        cleaned = OfficialIrraBPE.clean(caption)
        assert without_spaces(tokenizer.decode(tokenizer.encode(caption))) == without_spaces(
            cleaned
        )


@pytest.mark.parametrize(
    "text",
    [
        "A woman wearing a red coat and black pants",
        "the man has short hair and carries a grey backpack",
        "  Young   MAN\twith\nwhite  sneakers ",
    ],
)
def test_round_trip_is_exact_for_captions_without_punctuation(tokenizer, oracle, text):
    assert tokenizer.decode(tokenizer.encode(text)) == oracle.clean(text)


def test_special_ids_are_the_irra_ones(tokenizer):
    assert (tok.PAD_ID, tok.MASK_ID, tok.SOT_ID, tok.EOT_ID) == (0, 49405, 49406, 49407)
    assert tok.VOCAB_SIZE == 49408 == tokenizer.vocab_size
    assert tokenizer.decode([49405, 49406, 49407]) == "<|mask|><|startoftext|><|endoftext|>"


def test_common_word_ids_follow_the_vocabulary_file(tokenizer, merge_lines):
    # 'a' is byte 97; printable bytes start at '!' (33), so its symbol is id 97 - 33 = 64,
    # and the end-of-word variant comes 256 later.
    assert tokenizer.encode("a") == [64 + 256]
    # A merge on file line k (k >= 1; line 0 is the header) gets id 512 + k - 1.
    line = merge_lines.index("th e</w>")
    assert tokenizer.encode("The") == [512 + line - 1]
    line = merge_lines.index("wom an</w>")
    assert tokenizer.encode("woman") == [512 + line - 1]


def test_empty_and_whitespace_only_give_sot_eot_then_padding(tokenizer):
    expected = [49406, 49407] + [0] * 75
    for text in ["", "   ", "\t\n \r\n"]:
        assert tokenizer.encode(text) == []
        assert tokenize(text, tokenizer=tokenizer)[0].tolist() == expected


def test_single_string_and_batch_shapes(tokenizer):
    one = tokenize("a red coat", tokenizer=tokenizer)
    assert one.shape == (1, 77) and one.dtype == torch.long
    batch = tokenize(["a red coat", "blue jeans", ""], context_length=12, tokenizer=tokenizer)
    assert batch.shape == (3, 12)
    assert batch[0, :12].tolist() == tokenize("a red coat", 12, tokenizer=tokenizer)[0].tolist()


def test_decode_skips_padding_and_shows_special_tokens(tokenizer):
    ids = tokenize("A red coat", tokenizer=tokenizer)[0]
    assert tokenizer.decode(ids) == "<|startoftext|>a red coat <|endoftext|>"


def test_long_caption_is_cut_with_eot_in_last_slot(tokenizer, oracle):
    text = " ".join(f"word{i}" for i in range(60))  # 'word' + one token per digit: > 77 tokens
    ids = tokenize(text, tokenizer=tokenizer)
    assert ids.shape == (1, 77)
    assert ids[0, 0].item() == 49406 and ids[0, -1].item() == 49407
    assert (ids[0] != 0).all()
    assert ids[0].tolist() == oracle.tokenize(text)
    assert tokenize(text, 10, tokenizer=tokenizer)[0].tolist() == oracle.tokenize(text, 10)


def test_no_truncation_raises_only_when_too_long(tokenizer):
    fits = " ".join(["red"] * 75)  # 75 + SOT + EOT = 77
    assert tokenize(fits, truncate=False, tokenizer=tokenizer)[0, -1].item() == 49407
    with pytest.raises(ValueError, match="truncate=True"):
        tokenize(fits + " red", truncate=False, tokenizer=tokenizer)


@pytest.mark.parametrize(
    "text",
    [
        "Café naïve façade Zoë",
        "a ☃ snowman and 😀 emoji 👩‍👩‍👧",
        "日本語のテキスト",
        "ΜΕΓΆΛΟ ελληνικό",
        "straße ﬁne ＦＵＬＬＷＩＤＴＨ",
        "it's he'll they're I'VE we'd",
        "3.5 inch 1990s 12,000",
    ],
)
def test_unicode_matches_official_and_round_trips(tokenizer, oracle, text):
    assert tokenizer.encode(text) == oracle.encode(text)
    decoded = tokenizer.decode(tokenizer.encode(text))
    assert without_spaces(decoded) == without_spaces(oracle.clean(text))


def test_html_entities_are_unescaped(tokenizer, oracle):
    assert tokenizer.encode("salt &amp; pepper") == tokenizer.encode("salt & pepper")
    assert tokenizer.encode("&quot;red&quot;") == tokenizer.encode('"red"')
    assert tokenizer.encode("&amp;quot;red&amp;quot;") == tokenizer.encode('"red"')
    for text in ["salt &amp; pepper", "&quot;red&quot;", "&amp;amp;amp;", "a &lt;b&gt; c"]:
        assert tokenizer.encode(text) == oracle.encode(text)


def test_mojibake_is_fixed(tokenizer, oracle):
    broken = "cafÃ© with a â€œcoatâ€\x9d"
    assert tokenizer.encode(broken) == tokenizer.encode('café with a "coat"')
    assert tokenizer.encode(broken) == oracle.encode(broken)


def test_ascii_fast_path_cleans_like_ftfy(oracle):
    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + ["&amp;", "&quot;", "\r\n", "\x1b[31m", " ", "a"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert tok.clean_text(text) == oracle.clean(text), repr(text)


def test_dropped_last_merge_is_jekyll(merge_lines, oracle):
    last = merge_lines[49152 - 256 - 2]  # last line of IRRA's slice [1 : 49152 - 256 - 2 + 1]
    assert last == "jeky ll</w>"
    assert "jekyll</w>" not in oracle.encoder
    orphans = [m for m in oracle.bpe_ranks if "".join(m) not in oracle.encoder]
    assert orphans == [("jeky", "ll</w>")]


def test_jekyll_tokenizes_without_the_orphan_merge(tokenizer, oracle):
    with pytest.raises(KeyError):
        oracle.encode("jekyll")
    for text in ["jekyll", "Dr JEKYLL and mr hyde"]:
        ids = tokenizer.encode(text)
        assert ids and all(0 < i < 49405 for i in ids)
        assert tokenizer.decode(ids) == oracle.clean(text)
    assert len(tokenizer.encode("jekyll")) > 1
    assert tokenizer.encode("jeky") == oracle.encode("jeky")


def test_special_token_strings_in_text_are_plain_text(tokenizer, oracle):
    text = "a <|startoftext|> red <|endoftext|> coat <|mask|>"
    ids = tokenize(text, tokenizer=tokenizer)[0]
    assert (ids == 49406).sum() == 1 and ids[0] == 49406
    assert (ids == 49407).sum() == 1
    assert (ids == 49405).sum() == 0
    assert without_spaces(tokenizer.decode(tokenizer.encode(text))) == without_spaces(text)
    # The official tokenizer does turn the first two into special ids.
    assert 49406 in oracle.encode(text) and 49407 in oracle.encode(text)


def test_explicit_bpe_path_and_errors(tmp_path):
    assert Tokenizer(bpe_path=default_bpe_path()).encode("red coat") == default_tokenizer().encode(
        "red coat"
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer(bpe_path=tmp_path / "missing.txt.gz")
    not_gzip = tmp_path / "vocab.txt.gz"
    not_gzip.write_text("header\na b\n")
    with pytest.raises(ValueError, match="vocab.txt.gz"):
        Tokenizer(bpe_path=not_gzip)
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt", encoding="utf-8") as handle:
        handle.write("header\ni n\nt h\n")
    with pytest.raises(ValueError, match="short.txt.gz"):
        Tokenizer(bpe_path=short)


def test_missing_open_clip_gives_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="open_clip_torch"):
        default_bpe_path()


def test_bad_arguments_are_rejected(tokenizer):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tokenize(["ok", 3], tokenizer=tokenizer)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="context_length"):
        tokenize("ok", context_length=1, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="49408"):
        tokenizer.decode([49408])


def test_default_tokenizer_is_shared_and_pickles(tokenizer):
    assert default_tokenizer() is default_tokenizer()
    tokenizer.encode("a grey hoodie")
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.encode("a grey hoodie, black jeans") == tokenizer.encode(
        "a grey hoodie, black jeans"
    )
    assert torch.equal(clone("red coat"), tokenize("red coat"))
