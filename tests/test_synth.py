"""SynthPedes identities, drawing and captions: what is drawn and written matches the attributes."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from irra.data.synth import PALETTE, PARTS, Identity, render_person, sample_identity, write_captions
from irra.data.synth.attributes import FIELDS, identity_problems, make_sibling, sample_population

# --- an independent reading of captions: words -> (kind, specific value) -----------------------
COLOR_WORDS = {c: c for c in PALETTE} | {"grey": "gray", "beige": "khaki"}
HAIR_WORDS = {"black": "black", "brown": "brown", "blond": "blond", "blonde": "blond"}
HAIR_WORDS |= {"gray": "gray", "grey": "gray"}
NOUNS = {
    "t-shirt": ("upper", "t-shirt"),
    "tee": ("upper", "t-shirt"),
    "shirt": ("upper", "shirt"),
    "jacket": ("upper", "jacket"),
    "coat": ("upper", "coat"),
    "overcoat": ("upper", "coat"),
    "sweater": ("upper", "sweater"),
    "jumper": ("upper", "sweater"),
    "pullover": ("upper", "sweater"),
    "hoodie": ("upper", "hoodie"),
    "sweatshirt": ("upper", "hoodie"),
    "top": ("upper", None),
    "dress": ("upper", "dress"),
    "trousers": ("lower", "trousers"),
    "pants": ("lower", "trousers"),
    "slacks": ("lower", "trousers"),
    "jeans": ("lower", "jeans"),
    "shorts": ("lower", "shorts"),
    "skirt": ("lower", "skirt"),
    "shoes": ("shoes", None),
    "sneakers": ("shoes", None),
    "trainers": ("shoes", None),
    "backpack": ("bag", "backpack"),
    "handbag": ("bag", "handbag"),
    "purse": ("bag", "handbag"),
    "bag": ("bag", None),
    "cap": ("hat", None),
    "hat": ("hat", None),
    "scarf": ("scarf", None),
    "umbrella": ("umbrella", None),
    "hair": ("hair", None),
    "ponytail": ("hair", "ponytail"),
    "stripes": ("pattern", "stripes"),
    "logo": ("pattern", "logo"),
    "print": ("pattern", "logo"),
}
# words allowed between a colour and the noun it describes
MODIFIERS = set(COLOR_WORDS) | set(HAIR_WORDS) | {"and", "striped", "plaid", "checked"}
MODIFIERS |= {"checkered", "horizontally", "vertically", "horizontal", "vertical", "thin", "long"}
MODIFIERS |= {"short", "short-sleeved", "long-sleeved", "sleeve", "button-up", "button", "down"}
MODIFIERS |= {"collared", "zip-up", "zippered", "trench", "hooded", "knee-length", "denim"}
MODIFIERS |= {"tennis", "baseball", "messenger", "shoulder", "book", "open", "pair", "of", "a"}
MALE_WORDS = {"he", "his", "him", "man", "guy", "male"}
FEMALE_WORDS = {"she", "her", "woman", "lady", "girl", "female"}


def colour_mentions(caption: str) -> list[tuple[str, str, str | None]]:
    """(colour word, noun kind, noun value) pairs: 'a red shirt', 'his shoes are white'."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", caption.lower())
    found = []
    for i, w in enumerate(words):
        if w not in COLOR_WORDS and w not in HAIR_WORDS:
            continue
        for nxt in words[i + 1 : i + 8]:
            if nxt in NOUNS:
                found.append((w, *NOUNS[nxt]))
                break
            if nxt not in MODIFIERS:
                break
    pattern = r"\b(?:his|her) ([a-z -]+?) (?:is|are) ([a-z]+)\b"
    for noun, colour in re.findall(pattern, caption.lower()):
        kind = NOUNS.get(noun.split()[-1])
        if kind is not None and (colour in COLOR_WORDS or colour in HAIR_WORDS):
            found.append((colour, *kind))
    return found


def check_caption(caption: str, a: Identity) -> set[str]:
    """Assert every colour / garment / accessory mentioned is right; return the kinds mentioned."""
    kinds = set()
    for word, kind, value in colour_mentions(caption):
        kinds.add(kind)
        if kind == "hair":
            assert HAIR_WORDS[word] == a.hair_color, caption
            if value == "ponytail":
                assert a.hair_style == "ponytail", caption
            continue
        colour = COLOR_WORDS[word]
        if kind == "upper":
            assert colour in (a.upper_color, a.pattern_color), caption
            assert value in (None, a.upper_type), caption
        elif kind == "pattern":
            assert colour == a.pattern_color, caption
            expected = "logo" if a.pattern == "logo" else "stripes"
            assert value == expected and expected in a.pattern, caption
        elif kind == "lower":
            assert (colour, value or a.lower_type) == (a.lower_color, a.lower_type), caption
        elif kind == "bag":
            assert colour == a.bag_color and value in (None, a.bag_type), caption
        else:
            field = {"shoes": "shoe_color"}.get(kind, f"{kind}_color")
            assert colour == getattr(a, field), caption
    words = set(re.findall(r"[a-z]+(?:-[a-z]+)*", caption.lower()))
    if "bald" in words:
        assert a.hair_style == "bald"
        kinds.add("hair")
    if words & {"glasses", "eyeglasses"}:
        assert a.glasses
        kinds.add("glasses")
    if words & {"plaid", "checked", "checkered"}:
        assert a.pattern == "plaid", caption
    if words & {"striped", "stripes"}:
        assert a.pattern.endswith("stripes"), caption
    if words & {"vertical", "vertically"}:
        assert a.pattern == "vertical stripes", caption
    if words & {"horizontal", "horizontally"}:
        assert a.pattern == "horizontal stripes", caption
    gender_words = MALE_WORDS if a.gender == "female" else FEMALE_WORDS
    assert not words & gender_words, caption
    return kinds


def identities(n: int, seed: int = 0) -> list[Identity]:
    return [sample_identity(np.random.default_rng([seed, i])) for i in range(n)]


def test_sampled_identities_are_valid_and_varied():
    ids = identities(300)
    assert all(identity_problems(a) == [] for a in ids)
    for name in ("upper_type", "upper_color", "pattern", "lower_type", "bag_type", "hair_style"):
        assert len({getattr(a, name) for a in ids}) >= 4, name
    assert len(set(ids)) == len(ids)


def test_siblings_differ_in_one_or_two_fields():
    members = sample_population(120, lambda f: np.random.default_rng([7, f]))
    assert len(members) == 120
    assert len({m.identity for m in members}) == 120
    siblings = [m for i, m in enumerate(members) if m.base != i]
    assert len(siblings) > 20
    for m in siblings:
        base = members[m.base].identity
        diff = [f for f in FIELDS if getattr(base, f) != getattr(m.identity, f)]
        assert 1 <= len(diff) <= 2, diff
        assert m.family == members[m.base].family


def test_make_sibling_avoids_taken_identities():
    base = identities(1, seed=3)[0]
    rng = np.random.default_rng(0)
    taken = {base}
    for _ in range(5):
        sib = make_sibling(base, rng, taken)
        assert sib is not None and sib not in taken
        taken.add(sib)


def test_invalid_identity_is_refused():
    a = identities(1)[0]
    with pytest.raises(ValueError, match="upper_color"):
        Identity.from_dict(a.to_dict() | {"upper_color": "teal"})
    male = dataclasses.replace(a, gender="male", hair_style="short", hair_color="black")
    assert "skirts and dresses" in "; ".join(
        identity_problems(dataclasses.replace(male, lower_type="skirt", lower_color="red"))
    )


@pytest.mark.parametrize("view", ["front", "back", "left", "right"])
def test_captions_agree_with_attributes(view):
    for a in identities(150, seed=1):
        caps = write_captions(a, view, np.random.default_rng(0), count=3)
        assert len(set(caps)) == 3
        for c in caps:
            assert isinstance(c, str) and c.strip()
            kinds = check_caption(c, a)
            assert len(kinds) >= 3, (c, kinds)


def test_captions_only_mention_what_the_view_shows():
    a = dataclasses.replace(identities(1)[0], upper_type="t-shirt", sleeve="short", pattern="logo")
    a = dataclasses.replace(a, pattern_color="white", upper_color="black", glasses=True)
    back = write_captions(a, "back", np.random.default_rng(0), count=20)
    assert not any(re.search(r"\b(logo|print|glasses|eyeglasses)\b", c) for c in back)
    front = write_captions(a, "front", np.random.default_rng(0), count=20)
    assert any(re.search(r"\b(logo|print)\b", c) for c in front)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is all inside ``mask`` (drops blended edges)."""
    m = np.pad(mask, 1)
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= m[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def _dominant_colour(pixels: np.ndarray) -> str:
    names = list(PALETTE)
    ref = np.array([PALETTE[n] for n in names], dtype=float)
    nearest = np.argmin(((pixels[:, None, :].astype(float) - ref[None]) ** 2).sum(-1), axis=1)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())]


def test_drawn_colours_match_attributes():
    checked = {"upper": 0, "lower": 0, "shoes": 0, "bag": 0}
    for i, a in enumerate(identities(60, seed=2)):
        for view in ("front", "back", "left"):
            r = render_person(
                a, np.random.default_rng([i, 1]), (192, 80), view=view, with_labels=True
            )
            assert r.image.size == (80, 192) and r.labels.shape == (192, 80)
            img = np.asarray(r.image)
            for part, need in (("upper", 30), ("lower", 30), ("shoes", 4), ("bag", 30)):
                mask = _eroded(r.labels == PARTS[part])
                if mask.sum() < need:
                    continue
                want = a.shoe_color if part == "shoes" else getattr(a, f"{part}_color")
                assert _dominant_colour(img[mask]) == want, (part, view, a)
                checked[part] += 1
    assert checked["upper"] == 180 and checked["lower"] > 100 and checked["shoes"] > 60
    assert checked["bag"] > 20


def test_render_is_deterministic_and_respects_size():
    a = identities(1)[0]
    r1 = render_person(a, np.random.default_rng(5), (96, 40), with_labels=True)
    r2 = render_person(a, np.random.default_rng(5), (96, 40), with_labels=True)
    assert r1.image.size == (40, 96)
    assert r1.image.tobytes() == r2.image.tobytes() and r1.view == r2.view
    assert np.array_equal(r1.labels, r2.labels)
    # the person covers a fair part of the image and a background surrounds it
    person = (r1.labels > 0).mean()
    assert 0.1 < person < 0.6
    with pytest.raises(ValueError, match="view"):
        render_person(a, np.random.default_rng(0), view="top")
