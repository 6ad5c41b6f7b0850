"""Identity attributes for SynthPedes: the single source of truth for drawing and captions.

An identity is a frozen :class:`Identity` record of visible traits (clothes, colours, hair, bag,
accessories). Identities come in *families*: a base identity plus siblings that each change one
or two visible fields, so that retrieval has to look at details, not just the dominant colour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Named garment colours (RGB), far apart so that they stay distinct after lighting jitter.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 34),
    "white": (238, 238, 232),
    "gray": (132, 132, 136),
    "red": (206, 28, 36),
    "blue": (34, 78, 204),
    "green": (36, 148, 58),
    "yellow": (246, 214, 38),
    "orange": (242, 126, 18),
    "pink": (242, 118, 176),
    "purple": (122, 52, 160),
    "brown": (112, 66, 32),
    "khaki": (206, 170, 92),
}
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (24, 22, 22),
    "brown": (104, 64, 34),
    "blond": (224, 190, 106),
    "gray": (176, 176, 178),
}
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "light": (240, 204, 176),
    "medium": (214, 164, 124),
    "tan": (176, 122, 82),
    "dark": (108, 74, 50),
}

GENDERS = ("male", "female")
BUILDS = ("slim", "average", "heavy")
HEIGHTS = ("short", "average", "tall")
HAIR_STYLES = ("short", "long", "ponytail", "bald")
UPPER_TYPES = ("t-shirt", "shirt", "jacket", "coat", "sweater", "hoodie", "dress")
SLEEVES = ("short", "long")
PATTERNS = ("solid", "horizontal stripes", "vertical stripes", "plaid", "logo")
LOWER_TYPES = ("trousers", "jeans", "shorts", "skirt")
SHOE_COLORS = ("black", "white", "brown", "red", "blue", "gray")
BAG_TYPES = ("backpack", "handbag", "shoulder bag")
JEANS_COLORS = ("blue", "black", "gray")

#: Sleeve lengths each upper garment type allows.
SLEEVES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "t-shirt": ("short",),
    "shirt": ("short", "long"),
    "jacket": ("long",),
    "coat": ("long",),
    "sweater": ("long",),
    "hoodie": ("long",),
    "dress": ("short", "long"),
}
#: Patterns each upper garment type allows.
PATTERNS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "t-shirt": ("solid", "horizontal stripes", "logo"),
    "shirt": ("solid", "horizontal stripes", "vertical stripes", "plaid"),
    "jacket": ("solid", "plaid", "logo"),
    "coat": ("solid", "plaid"),
    "sweater": ("solid", "horizontal stripes", "logo"),
    "hoodie": ("solid", "horizontal stripes", "logo"),
    "dress": ("solid", "horizontal stripes", "vertical stripes", "plaid"),
}
FEMALE_ONLY = frozenset({"skirt", "dress"})
#: Minimum RGB distance between a garment colour and its pattern or scarf colour.
MIN_CONTRAST = 150.0


@dataclass(frozen=True)
class Identity:
    """The visible traits of one person. ``None`` means "absent" (no hat, no bag...)."""

    gender: str
    build: str
    height: str
    skin: str
    hair_style: str
    hair_color: str | None
    hat_color: str | None
    glasses: bool
    upper_type: str
    upper_color: str
    sleeve: str
    pattern: str
    pattern_color: str | None
    lower_type: str | None
    lower_color: str | None
    shoe_color: str
    bag_type: str | None
    bag_color: str | None
    scarf_color: str | None
    umbrella_color: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields, in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        """Inverse of :meth:`to_dict`; validates the result."""
        identity = cls(**data)
        problems = identity_problems(identity)
        if problems:
            raise ValueError(f"invalid identity {data}: {'; '.join(problems)}")
        return identity


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Identity))


def color_distance(a: str, b: str) -> float:
    """Euclidean RGB distance between two palette colours."""
    return float(np.linalg.norm(np.subtract(PALETTE[a], PALETTE[b], dtype=float)))


def identity_problems(ident: Identity) -> list[str]:
    """Every rule ``ident`` breaks (empty when valid)."""
    p: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            p.append(msg)

    check(ident.gender in GENDERS, f"gender {ident.gender!r} not in {GENDERS}")
    check(ident.build in BUILDS, f"build {ident.build!r} not in {BUILDS}")
    check(ident.height in HEIGHTS, f"height {ident.height!r} not in {HEIGHTS}")
    check(ident.skin in SKIN_TONES, f"skin {ident.skin!r} unknown")
    check(ident.hair_style in HAIR_STYLES, f"hair_style {ident.hair_style!r} unknown")
    if ident.hair_style == "bald":
        check(ident.hair_color is None, "a bald person has no hair_color")
        check(ident.gender == "male", "only men are drawn bald")
    else:
        check(ident.hair_color in HAIR_COLORS, f"hair_color {ident.hair_color!r} unknown")
    check(ident.hat_color is None or ident.hat_color in PALETTE, "hat_color unknown")
    check(isinstance(ident.glasses, bool), "glasses must be a bool")
    check(ident.upper_type in UPPER_TYPES, f"upper_type {ident.upper_type!r} unknown")
    check(ident.upper_color in PALETTE, f"upper_color {ident.upper_color!r} unknown")
    if ident.upper_type in SLEEVES_BY_TYPE:
        check(ident.sleeve in SLEEVES_BY_TYPE[ident.upper_type], "sleeve not allowed for type")
        check(ident.pattern in PATTERNS_BY_TYPE[ident.upper_type], "pattern not allowed for type")
    if ident.pattern == "solid":
        check(ident.pattern_color is None, "a solid garment has no pattern_color")
    else:
        ok = ident.pattern_color in PALETTE and ident.upper_color in PALETTE
        check(ok, f"pattern_color {ident.pattern_color!r} unknown")
        if ok:
            d = color_distance(ident.upper_color, ident.pattern_color)  # type: ignore[arg-type]
            check(d >= MIN_CONTRAST, "pattern_color too close to upper_color")
    if ident.upper_type == "dress":
        check(ident.lower_type is None and ident.lower_color is None, "a dress has no lower")
    else:
        check(ident.lower_type in LOWER_TYPES, f"lower_type {ident.lower_type!r} unknown")
        check(ident.lower_color in PALETTE, f"lower_color {ident.lower_color!r} unknown")
        if ident.lower_type == "jeans":
            check(ident.lower_color in JEANS_COLORS, f"jeans come in {JEANS_COLORS}")
    if ident.gender == "male":
        worn = {ident.upper_type, ident.lower_type}
        check(not (worn & FEMALE_ONLY), "skirts and dresses are drawn on women only")
    check(ident.shoe_color in SHOE_COLORS, f"shoe_color {ident.shoe_color!r} unknown")
    if ident.bag_type is None:
        check(ident.bag_color is None, "no bag, no bag_color")
    else:
        check(ident.bag_type in BAG_TYPES, f"bag_type {ident.bag_type!r} unknown")
        check(ident.bag_color in PALETTE, f"bag_color {ident.bag_color!r} unknown")
    if ident.scarf_color is not None:
        ok = ident.scarf_color in PALETTE
        check(ok, "scarf_color unknown")
        if ok:
            d = color_distance(ident.scarf_color, ident.upper_color)
            check(d >= MIN_CONTRAST, "scarf_color too close to upper_color")
    check(ident.umbrella_color is None or ident.umbrella_color in PALETTE, "umbrella unknown")
    return p


def hair_color_visible(ident: Identity) -> bool:
    """Whether the hair colour shows (short hair under a cap is hidden)."""
    if ident.hair_style == "bald":
        return False
    return not (ident.hat_color is not None and ident.hair_style == "short")


def _pick(
    rng: np.random.Generator, options: Sequence[Any], weights: Sequence[float] | None = None
) -> Any:
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _contrasting(rng: np.random.Generator, base: str, exclude: Sequence[str] = ()) -> str:
    options = [c for c in PALETTE if c not in exclude and color_distance(c, base) >= MIN_CONTRAST]
    return _pick(rng, options)


def _sample_pattern_color(rng: np.random.Generator, ident_upper: str) -> str:
    return _contrasting(rng, ident_upper)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one random, valid identity."""
    gender = _pick(rng, GENDERS)
    male = gender == "male"
    hair_style = _pick(rng, HAIR_STYLES, (0.72, 0.08, 0.04, 0.16) if male else (0.2, 0.5, 0.3, 0))
    hair_color = None if hair_style == "bald" else _pick(rng, tuple(HAIR_COLORS), (4, 3, 2, 1))
    upper_type = _pick(
        rng, UPPER_TYPES, (5, 4, 3, 2, 2.5, 2.5, 0) if male else (5, 4, 3, 2, 2.5, 2, 3)
    )
    upper_color = _pick(rng, tuple(PALETTE))
    pattern = _pick(rng, PATTERNS_BY_TYPE[upper_type], None)
    if rng.random() < 0.45:  # solid garments are the most common
        pattern = "solid"
    pattern_color = None if pattern == "solid" else _sample_pattern_color(rng, upper_color)
    if upper_type == "dress":
        lower_type = lower_color = None
    else:
        lower_type = _pick(rng, LOWER_TYPES, (4.5, 4, 1.5, 0) if male else (3, 3, 1, 3))
        lower_color = _pick(rng, JEANS_COLORS if lower_type == "jeans" else tuple(PALETTE))
    bag_type = _pick(rng, (None, *BAG_TYPES), (3.5, 3, 1 if male else 2.5, 2))
    scarf_color = _contrasting(rng, upper_color) if rng.random() < 0.1 else None
    return Identity(
        gender=gender,
        build=_pick(rng, BUILDS, (0.3, 0.5, 0.2)),
        height=_pick(rng, HEIGHTS),
        skin=_pick(rng, tuple(SKIN_TONES)),
        hair_style=hair_style,
        hair_color=hair_color,
        hat_color=_pick(rng, tuple(PALETTE)) if rng.random() < 0.18 else None,
        glasses=bool(rng.random() < 0.2),
        upper_type=upper_type,
        upper_color=upper_color,
        sleeve=_pick(rng, SLEEVES_BY_TYPE[upper_type]),
        pattern=pattern,
        pattern_color=pattern_color,
        lower_type=lower_type,
        lower_color=lower_color,
        shoe_color=_pick(rng, SHOE_COLORS),
        bag_type=bag_type,
        bag_color=None if bag_type is None else _pick(rng, tuple(PALETTE)),
        scarf_color=scarf_color,
        umbrella_color=_pick(rng, tuple(PALETTE)) if rng.random() < 0.07 else None,
    )


#: Fields a sibling may change, with how often; all of them are visible and captioned.
MUTABLE_FIELDS: dict[str, float] = {
    "upper_color": 4,
    "lower_color": 3,
    "upper_type": 2,
    "lower_type": 2,
    "pattern": 2,
    "pattern_color": 1,
    "shoe_color": 2,
    "bag_type": 1.5,
    "bag_color": 2,
    "hair_style": 1,
    "hair_color": 1,
    "hat_color": 1,
    "scarf_color": 0.5,
    "umbrella_color": 0.5,
}


def _mutate_field(ident: Identity, name: str, rng: np.random.Generator) -> Identity | None:
    """Change ``name`` (and only dependent fields that must follow) or return None."""
    cur = getattr(ident, name)
    changes: dict[str, Any] = {}
    if name in ("upper_color", "shoe_color", "lower_color", "bag_color", "hair_color"):
        if cur is None or (name == "hair_color" and not hair_color_visible(ident)):
            return None
        pool = {
            "shoe_color": SHOE_COLORS,
            "hair_color": tuple(HAIR_COLORS),
            "lower_color": JEANS_COLORS if ident.lower_type == "jeans" else tuple(PALETTE),
        }.get(name, tuple(PALETTE))
        changes[name] = _pick(rng, [c for c in pool if c != cur])
    elif name == "pattern_color":
        if cur is None:
            return None
        changes[name] = _contrasting(rng, ident.upper_color, exclude=(cur,))
    elif name == "upper_type":
        if cur == "dress":
            return None
        options = [t for t in UPPER_TYPES if t not in (cur, "dress")]
        new = _pick(rng, options)
        changes[name] = new
        if ident.sleeve not in SLEEVES_BY_TYPE[new] or ident.pattern not in PATTERNS_BY_TYPE[new]:
            return None
    elif name == "lower_type":
        if cur is None:
            return None
        options = [t for t in LOWER_TYPES if t != cur]
        changes[name] = _pick(rng, options)
    elif name == "pattern":
        options = [t for t in PATTERNS_BY_TYPE[ident.upper_type] if t != cur]
        new = _pick(rng, options)
        changes[name] = new
        if new == "solid":
            changes["pattern_color"] = None
        elif ident.pattern_color is None:
            changes["pattern_color"] = _sample_pattern_color(rng, ident.upper_color)
    elif name == "bag_type":
        options = [t for t in (None, *BAG_TYPES) if t != cur]
        new = _pick(rng, options)
        changes[name] = new
        if new is None:
            changes["bag_color"] = None
        elif ident.bag_color is None:
            changes["bag_color"] = _pick(rng, tuple(PALETTE))
    elif name == "hair_style":
        options = [s for s in HAIR_STYLES if s != cur]
        new = _pick(rng, options)
        changes[name] = new
        if ident.hat_color is not None and {cur, new} <= {"short", "bald"}:
            return None  # a cap hides the difference
        if new == "bald":
            changes["hair_color"] = None
        elif ident.hair_color is None:
            changes["hair_color"] = _pick(rng, tuple(HAIR_COLORS))
    elif name in ("hat_color", "scarf_color", "umbrella_color"):
        options = [None, *PALETTE]
        changes[name] = _pick(rng, [c for c in options if c != cur])
    else:  # pragma: no cover - MUTABLE_FIELDS and this function are kept in step
        raise KeyError(name)
    new_ident = dataclasses.replace(ident, **changes)
    return None if identity_problems(new_ident) else new_ident


def differing_fields(a: Identity, b: Identity) -> list[str]:
    """Names of the fields where ``a`` and ``b`` differ."""
    return [f for f in FIELDS if getattr(a, f) != getattr(b, f)]


def make_sibling(
    base: Identity, rng: np.random.Generator, taken: set[Identity], max_tries: int = 200
) -> Identity | None:
    """A variant of ``base`` that differs in one or two visible fields and is not in ``taken``."""
    names = tuple(MUTABLE_FIELDS)
    weights = tuple(MUTABLE_FIELDS.values())
    for _ in range(max_tries):
        steps = 1 if rng.random() < 0.6 else 2
        cand: Identity | None = base
        for _ in range(steps):
            cand = _mutate_field(cand, _pick(rng, names, weights), rng)
            if cand is None:
                break
        if cand is None or cand in taken:
            continue
        if 1 <= len(differing_fields(base, cand)) <= 2:
            return cand
    return None


@dataclass(frozen=True)
class FamilyMember:
    """One identity plus where it comes from. ``base`` is the index of the family's base."""

    identity: Identity
    family: int
    base: int


def sample_population(
    num_ids: int,
    rng_for_family: Callable[[int], np.random.Generator],
    family_sizes: Sequence[float] = (0.2, 0.25, 0.3, 0.25),
) -> list[FamilyMember]:
    """Draw ``num_ids`` distinct identities in families (base first, then its siblings).

    Args:
        num_ids: how many identities.
        rng_for_family: ``f(family_index) -> np.random.Generator``; each family draws from its
            own generator, so the first families do not depend on ``num_ids``.
        family_sizes: probabilities of families of 1, 2, 3, ... members.
    """
    members: list[FamilyMember] = []
    taken: set[Identity] = set()
    family = 0
    while len(members) < num_ids:
        rng = rng_for_family(family)
        size = 1 + int(
            rng.choice(len(family_sizes), p=np.asarray(family_sizes) / sum(family_sizes))
        )
        base = sample_identity(rng)
        while base in taken:
            base = sample_identity(rng)
        base_index = len(members)
        members.append(FamilyMember(base, family, base_index))
        taken.add(base)
        for _ in range(size - 1):
            if len(members) >= num_ids:
                break
            sib = make_sibling(base, rng, taken)
            if sib is None:
                break
            members.append(FamilyMember(sib, family, base_index))
            taken.add(sib)
        family += 1
    return members
