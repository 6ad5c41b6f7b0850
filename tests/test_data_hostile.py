"""Hostile dataset files: each case is read correctly or refused with the documented message.

Every case goes through :func:`read_dataset` (with image checking, as ``irra train`` does) and, when
it is accepted, through a training item (decode, augment, tokenize, mask). Nothing may escape as
anything but :class:`DatasetError`.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data_support import make_entries, write_dataset

from irra.data import build_train_transform
from irra.data.datasets import TrainDataset
from irra.data.formats import read_dataset
from irra.data.validate import DatasetError
from irra.tokenizer import EOT_ID, MASK_ID, SOT_ID

NAME, ANNOTATION, KEY = "ICFG-PEDES", "ICFG-PEDES.json", "file_path"
SIZE = (16, 8)


def _entries() -> list[dict]:
    return make_entries({"train": {0: 2, 1: 2}, "test": {5: 1}}, KEY)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _sixteen_bit() -> bytes:
    image = Image.new("I;16", (8, 16))
    image.putdata([i * 500 for i in range(8 * 16)])
    return _encoded(image, "PNG")


# name -> (image bytes, accepted?)
IMAGES = {
    "zero-byte": (b"", False),
    "text file named .png": (b"hello, not an image", False),
    "truncated jpeg": (_encoded(Image.new("RGB", (64, 128), (9, 80, 200)), "JPEG")[:300], False),
    "decompression bomb header": (_png_header_only(60_000, 60_000), False),
    "zero-size header": (_png_header_only(0, 10), False),
    "grayscale": (_encoded(Image.new("L", (8, 16), 120), "PNG"), True),
    "1-bit": (_encoded(Image.new("1", (8, 16), 1), "PNG"), True),
    "palette": (_encoded(Image.new("P", (8, 16), 3), "PNG"), True),
    "cmyk jpeg": (_encoded(Image.new("CMYK", (8, 16), (0, 200, 0, 0)), "JPEG"), True),
    "rgba": (_encoded(Image.new("RGBA", (8, 16), (10, 20, 30, 0)), "PNG"), True),
    "16-bit grayscale": (_sixteen_bit(), True),
    "large (3000x1500)": (_encoded(Image.new("RGB", (1500, 3000), (1, 2, 3)), "PNG"), True),
    "1x1 pixel": (_encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), True),
    "webp": (_encoded(Image.new("RGB", (8, 16), (1, 2, 3)), "WEBP"), True),
    "gif": (_encoded(Image.new("P", (8, 16), 1), "GIF"), True),
}


def _first_item(tmp_path: Path) -> dict:
    data = read_dataset(NAME, tmp_path, num_workers=1)
    dataset = TrainDataset(
        data.train, build_train_transform(SIZE), text_length=24, masked_global_text=False
    )
    return dataset[0]


@pytest.mark.parametrize("case", list(IMAGES), ids=list(IMAGES))
def test_each_image_kind_is_read_or_refused_naming_it(tmp_path, case):
    content, accepted = IMAGES[case]
    entries = _entries()
    folder = write_dataset(tmp_path, NAME, ANNOTATION, KEY, entries)
    (folder / "imgs" / entries[0][KEY]).write_bytes(content)
    if not accepted:
        with pytest.raises(DatasetError) as info:
            read_dataset(NAME, tmp_path, num_workers=1)
        message = str(info.value)
        assert "entry 0" in message and entries[0][KEY] in message, message
        assert "Fix" in message
        # The documented alternative: skip the bad image and train on the rest.
        kept = read_dataset(NAME, tmp_path, on_error="skip", num_workers=1, run_dir=tmp_path)
        assert kept.train.num_images == 3
        return
    item = _first_item(tmp_path)
    assert item["images"].shape == (3, *SIZE)
    assert torch.isfinite(item["images"]).all()


def _with_annotation_bytes(tmp_path: Path, content: bytes) -> Path:
    folder = write_dataset(tmp_path, NAME, ANNOTATION, KEY, _entries())
    (folder / ANNOTATION).write_bytes(content)
    return folder


ANNOTATIONS = {
    "latin-1 bytes": json.dumps(_entries(), ensure_ascii=False)
    .replace("person", "personne \u00e9t\u00e9")
    .encode("latin-1"),
    "utf-16": json.dumps(_entries()).encode("utf-16"),
    "empty file": b"",
    "truncated json": json.dumps(_entries()).encode()[:-40],
    "json object": b'{"split": "train"}',
    "nan id": json.dumps(_entries()).replace('"id": 0', '"id": NaN').encode(),
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", list(ANNOTATIONS), ids=list(ANNOTATIONS))
def test_malformed_annotation_files_are_refused_naming_the_file(tmp_path, case):
    folder = _with_annotation_bytes(tmp_path, ANNOTATIONS[case])
    with pytest.raises(DatasetError) as info:
        read_dataset(NAME, tmp_path, num_workers=1)
    message = str(info.value)
    assert str(folder / ANNOTATION) in message, message
    assert "Fix" in message, message


def test_utf8_with_bom_is_read(tmp_path):
    entries = _entries()
    _with_annotation_bytes(tmp_path, b"\xef\xbb\xbf" + json.dumps(entries).encode())
    data = read_dataset(NAME, tmp_path, num_workers=1)
    assert data.train.num_images == 4


CAPTIONS = {
    "nul and escape": "a man\x00 in a \x1b[31mred\x1b[0m coat",
    "bidi override": "a woman \u202ein a blue\u202c dress",
    "zero-width": "a man\u200b in a\u200d black\ufeff hat",
    "tabs and newlines": "a man\tin a\r\nwhite\vshirt",
    "emoji and cjk": "a man \U0001f600 in a \u7ea2\u8272 coat",
    "lone surrogate escape": "a man in a coat \\ud800",
    "spelled special token": "a man <|endoftext|> in a <|mask|> coat",
    "10,000 characters": "a man in a red coat " * 500,
}


@pytest.mark.parametrize("case", list(CAPTIONS), ids=list(CAPTIONS))
def test_captions_with_control_characters_are_read_and_tokenized(tmp_path, case):
    entries = _entries()
    entries[0]["captions"] = [CAPTIONS[case], "a plain caption"]
    write_dataset(tmp_path, NAME, ANNOTATION, KEY, entries)
    item = _first_item(tmp_path)
    ids = item["caption_ids"]
    assert ids.shape == (24,)
    assert int(ids[0]) == SOT_ID
    assert int(ids.max()) == EOT_ID  # exactly one end-of-text, the largest id
    assert int((ids == EOT_ID).sum()) == 1
    assert int((ids == MASK_ID).sum()) == 0
    assert int((ids == SOT_ID).sum()) == 1
