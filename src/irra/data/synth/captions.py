"""CUHK-PEDES-style captions written from an identity's attributes.

Captions vary in wording (synonyms, templates, attribute order, fragments, casing and
punctuation) and in coverage (all attributes or a subset of at least three), but every word
about clothes, colours, hair and bags comes from the :class:`Identity`, and only what the view
shows is mentioned (a chest print only from the front, glasses not from the back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from irra.data.synth.attributes import Identity, hair_color_visible

#: Words a colour may be written as (the first is the canonical name).
COLOR_WORDS: dict[str, tuple[str, ...]] = {"gray": ("gray", "grey"), "khaki": ("khaki", "beige")}
HAIR_COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "gray": ("gray", "grey"),
    "blond": ("blond", "blonde"),
}
UPPER_NOUNS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "T-shirt", "tee"),
    "shirt": ("shirt", "button-up shirt", "collared shirt", "button down shirt"),
    "jacket": ("jacket", "zip-up jacket", "zippered jacket"),
    "coat": ("coat", "long coat", "overcoat", "trench coat"),
    "sweater": ("sweater", "jumper", "pullover"),
    "hoodie": ("hoodie", "hooded sweatshirt", "hooded top"),
    "dress": ("dress", "knee-length dress"),
}
LOWER_NOUNS: dict[str, tuple[str, ...]] = {
    "trousers": ("trousers", "pants", "slacks"),
    "jeans": ("jeans", "denim jeans"),
    "shorts": ("shorts",),
    "skirt": ("skirt", "knee-length skirt"),
}
SHOE_NOUNS = ("shoes", "sneakers", "tennis shoes", "trainers")
SUBJECTS: dict[str, tuple[tuple[str, float], ...]] = {
    "male": (
        ("man", 6),
        ("guy", 1),
        ("young man", 1),
        ("male", 1),
        ("person", 1),
        ("pedestrian", 0.5),
    ),
    "female": (
        ("woman", 5),
        ("lady", 1.5),
        ("girl", 1),
        ("young woman", 1),
        ("female", 0.5),
        ("person", 1),
        ("pedestrian", 0.5),
    ),
}
BUILD_WORDS = {"slim": ("slim", "thin", "skinny"), "heavy": ("heavy-set", "stocky", "chubby")}
WEAR_KINDS = ("upper", "lower", "shoes", "hat", "scarf", "glasses")
CARRY_KINDS = ("bag", "umbrella")


@dataclass(frozen=True)
class Fact:
    """One attribute as words: a noun phrase and, for some, a ``his/her ...`` predicate."""

    kind: str
    phrase: str
    predicate: str | None = None  # e.g. "shoes are white" (after "His"/"Her")


def _pick(
    rng: np.random.Generator, options: Sequence[Any], weights: Sequence[float] | None = None
) -> Any:
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article."""
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def color_word(name: str, rng: np.random.Generator) -> str:
    """A way to write garment colour ``name``."""
    return _pick(rng, COLOR_WORDS.get(name, (name,)))


def _upper(ident: Identity, view: str, rng: np.random.Generator) -> str:
    c = color_word(ident.upper_color, rng)
    noun = _pick(rng, UPPER_NOUNS[ident.upper_type])
    pc = color_word(ident.pattern_color, rng) if ident.pattern_color else ""
    sleeve = ""
    if ident.upper_type in ("shirt", "dress") and rng.random() < 0.5:
        sleeve = _pick(rng, (f"{ident.sleeve}-sleeved", f"{ident.sleeve} sleeve")) + " "
    elif ident.upper_type == "t-shirt" and rng.random() < 0.15:
        sleeve = "short-sleeved "
    pattern = ident.pattern
    if pattern == "logo" and view != "front":
        pattern = "solid"  # the print is on the chest
    if pattern == "horizontal stripes":
        body = _pick(
            rng,
            (
                f"{c} and {pc} striped {noun}",
                f"{c} {noun} with {pc} stripes",
                f"{c} {noun} with horizontal {pc} stripes",
                f"{c} and {pc} horizontally striped {noun}",
            ),
        )
    elif pattern == "vertical stripes":
        body = _pick(
            rng,
            (
                f"{c} {noun} with vertical {pc} stripes",
                f"{c} and {pc} vertically striped {noun}",
                f"{c} {noun} with thin vertical {pc} stripes",
            ),
        )
    elif pattern == "plaid":
        body = _pick(
            rng,
            (
                f"{c} plaid {noun}",
                f"{c} and {pc} plaid {noun}",
                f"{c} and {pc} checked {noun}",
                f"{c} checkered {noun}",
            ),
        )
    elif pattern == "logo":
        body = _pick(
            rng,
            (
                f"{c} {noun} with a {pc} logo on the front",
                f"{c} {noun} with a {pc} print on the chest",
                f"{c} {noun} with a {pc} logo",
            ),
        )
    else:
        body = f"{c} {noun}"
    return _a(sleeve + body)


def _facts(ident: Identity, view: str, rng: np.random.Generator, poss: str) -> list[Fact]:
    facts = [Fact("upper", _upper(ident, view, rng))]
    if ident.lower_type is not None and ident.lower_color is not None:
        c = color_word(ident.lower_color, rng)
        noun = _pick(rng, LOWER_NOUNS[ident.lower_type])
        if ident.lower_type == "skirt":
            facts.append(Fact("lower", _a(f"{c} {noun}")))
        else:
            phrase = f"a pair of {c} {noun}" if rng.random() < 0.25 else f"{c} {noun}"
            facts.append(Fact("lower", phrase, f"{noun} are {c}"))
    shoe = color_word(ident.shoe_color, rng)
    noun = _pick(rng, SHOE_NOUNS)
    phrase = f"a pair of {shoe} {noun}" if rng.random() < 0.2 else f"{shoe} {noun}"
    facts.append(Fact("shoes", phrase, f"{noun} are {shoe}"))
    if ident.hair_style == "bald":
        facts.append(Fact("hair", "a bald head"))
    elif hair_color_visible(ident) and ident.hair_color is not None:
        hc = _pick(rng, HAIR_COLOR_WORDS.get(ident.hair_color, (ident.hair_color,)))
        options = {
            "short": (f"short {hc} hair", f"{hc} short hair", f"short, {hc} hair"),
            "long": (f"long {hc} hair", f"long {hc} hair past {poss} shoulders"),
            "ponytail": (
                f"{hc} hair in a ponytail",
                f"a {hc} ponytail",
                f"{hc} hair tied in a ponytail",
            ),
        }[ident.hair_style]
        facts.append(Fact("hair", _pick(rng, options)))
    if ident.hat_color is not None:
        hat = _pick(rng, ("cap", "baseball cap", "hat"))
        facts.append(Fact("hat", _a(f"{color_word(ident.hat_color, rng)} {hat}")))
    if ident.glasses and view != "back":
        facts.append(Fact("glasses", _pick(rng, ("glasses", "eyeglasses", "a pair of glasses"))))
    if ident.scarf_color is not None:
        c = color_word(ident.scarf_color, rng)
        facts.append(Fact("scarf", _pick(rng, (f"a {c} scarf", f"a {c} scarf around {poss} neck"))))
    if ident.bag_type is not None and ident.bag_color is not None:
        c = color_word(ident.bag_color, rng)
        options = {
            "backpack": (f"{c} backpack", f"{c} bag on {poss} back", f"{c} book bag"),
            "handbag": (f"{c} handbag", f"{c} purse", f"{c} bag in {poss} hand"),
            "shoulder bag": (
                f"{c} shoulder bag",
                f"{c} bag over {poss} shoulder",
                f"{c} messenger bag",
            ),
        }[ident.bag_type]
        facts.append(Fact("bag", _a(_pick(rng, options))))
    if ident.umbrella_color is not None:
        c = color_word(ident.umbrella_color, rng)
        facts.append(Fact("umbrella", _a(_pick(rng, (f"{c} umbrella", f"open {c} umbrella")))))
    return facts


def _join(items: Sequence[str], rng: np.random.Generator) -> str:
    if len(items) <= 1:
        return "".join(items)
    comma = "," if len(items) > 2 and rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _choose(facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    """All facts (long captions) or a random subset of at least three, upper garment included."""
    if len(facts) <= 3 or rng.random() < 0.45:
        return list(facts)
    rest = facts[1:]
    k = int(rng.integers(2, len(rest) + 1))
    keep = sorted(rng.choice(len(rest), size=k, replace=False).tolist())
    return [facts[0]] + [rest[i] for i in keep]


def _order_wear(wear: list[Fact], rng: np.random.Generator) -> list[Fact]:
    order = [wear[i] for i in rng.permutation(len(wear))]
    if rng.random() < 0.7:  # most people start with the top and end with the shoes
        order.sort(key=lambda f: {"upper": 0, "shoes": 2}.get(f.kind, 1))
    return order


def write_caption(ident: Identity, view: str, rng: np.random.Generator) -> str:
    """One caption of ``ident`` as seen from ``view``."""
    male = ident.gender == "male"
    he, his = ("He", "His") if male else ("She", "Her")
    facts = _choose(_facts(ident, view, rng, his.lower()), rng)
    hair = next((f.phrase for f in facts if f.kind == "hair"), None)
    wear = _order_wear([f for f in facts if f.kind in WEAR_KINDS], rng)
    carry = [f.phrase for f in facts if f.kind in CARRY_KINDS]
    trailing = []
    for f in list(wear[1:]):
        if f.predicate is not None and rng.random() < 0.2:
            trailing.append(f"{his} {f.predicate}")
            wear.remove(f)
    noun = _pick(rng, *zip(*SUBJECTS[ident.gender], strict=True))
    if ident.build in BUILD_WORDS and rng.random() < 0.2:
        noun = f"{_pick(rng, BUILD_WORDS[ident.build])} {noun}"
    det = _pick(rng, ("A", "The", "This"), (5, 3, 2))
    subject = f"{det} {noun}" if det != "A" else _a(noun).capitalize()
    hair_mode = _pick(rng, ("with", "has", "separate")) if hair else None
    if hair_mode == "with":
        subject += f" with {hair}"
    wear_text = [f.phrase for f in wear]
    sentences: list[str] = []
    if rng.random() < 0.3:  # a fragment, as many real captions are
        s = f"{subject} {_pick(rng, ('wearing', 'dressed in', 'in'))} {_join(wear_text, rng)}"
        if carry:
            s += _pick(rng, (" and carrying ", ", carrying ", " with ")) + _join(carry, rng)
        sentences.append(s)
        if hair_mode in ("has", "separate"):
            sentences.append(f"{he} has {hair}")
    else:
        split = len(wear_text) if len(wear_text) < 3 or rng.random() < 0.6 else 2
        first, second = wear_text[:split], wear_text[split:]
        verb = _pick(rng, ("is wearing", "wears", "is dressed in", "has on", "is in"))
        if hair_mode == "has":
            s = f"{subject} has {hair} and {_pick(rng, ('is wearing', 'wears', 'is dressed in'))}"
        else:
            s = f"{subject} {verb}"
        s += f" {_join(first, rng)}"
        if carry and rng.random() < 0.5:
            s += f" and {_pick(rng, ('is carrying', 'carries', 'has'))} {_join(carry, rng)}"
            carry = []
        sentences.append(s)
        if second:
            also = _pick(rng, ("is also wearing", "also has on", "also wears", "wears"))
            sentences.append(f"{he} {also} {_join(second, rng)}")
        if carry:
            sentences.append(
                f"{he} {_pick(rng, ('is carrying', 'carries', 'has'))} {_join(carry, rng)}"
            )
        if hair_mode == "separate":
            sentences.insert(int(rng.integers(1, len(sentences) + 1)), f"{he} has {hair}")
    sentences += trailing
    return _punctuate(sentences, rng)


def _punctuate(sentences: list[str], rng: np.random.Generator) -> str:
    sep = ".  " if rng.random() < 0.2 else ". "
    text = sep.join(sentences)
    if rng.random() < 0.85:
        text += "."
    if rng.random() < 0.1:
        text = text[0].lower() + text[1:]
    return text


def write_captions(
    ident: Identity, view: str, rng: np.random.Generator, count: int = 2, max_words: int = 55
) -> list[str]:
    """``count`` different captions of ``ident`` seen from ``view`` (each at most ``max_words``)."""
    out: list[str] = []
    for _ in range(50 * count):
        text = write_caption(ident, view, rng)
        if len(text.split()) <= max_words and text not in out:
            out.append(text)
        if len(out) == count:
            return out
    raise RuntimeError(
        f"could not write {count} different captions for {ident}"
    )  # pragma: no cover
