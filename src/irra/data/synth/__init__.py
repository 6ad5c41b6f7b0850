"""SynthPedes: a procedural pedestrian dataset with captions, in CUHK-PEDES format.

Identities are structured attribute sets (:class:`Identity`) sampled in families of near
duplicates; the renderer and the caption writer both read them, so images and captions agree.

Example:
    >>> from irra.data.synth import generate_synthpedes
    >>> summary = generate_synthpedes("data/SynthPedes", num_ids=200, workers=2)  # doctest: +SKIP
"""

from irra.data.synth.attributes import PALETTE, Identity, sample_identity, sample_population
from irra.data.synth.captions import write_captions
from irra.data.synth.contact_sheet import make_contact_sheet
from irra.data.synth.painter import PARTS
from irra.data.synth.render import Rendered, render_person
from irra.data.synth.writer import SynthSummary, generate_synthpedes, split_counts, summarize

__all__ = [
    "PALETTE",
    "PARTS",
    "Identity",
    "Rendered",
    "SynthSummary",
    "generate_synthpedes",
    "make_contact_sheet",
    "render_person",
    "sample_identity",
    "sample_population",
    "split_counts",
    "summarize",
    "write_captions",
]
