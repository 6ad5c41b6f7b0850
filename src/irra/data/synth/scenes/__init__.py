"""Synthetic street footage: SynthPedes people walking through fixed-camera sequences, written
in the MOTChallenge layout with ground truth, simulated detections and a caption per track.

Example:
    >>> from irra.data.synth.scenes import SceneParams, generate_scenes
    >>> generate_scenes("data/scenes", SceneParams(sequences=2, frames=200))  # doctest: +SKIP
"""

from irra.data.synth.scenes.writer import (
    SceneParams,
    ScenesSummary,
    draw_sequence,
    generate_scenes,
    plan_sequence,
    sequence_name,
)

__all__ = [
    "SceneParams",
    "ScenesSummary",
    "draw_sequence",
    "generate_scenes",
    "plan_sequence",
    "sequence_name",
]
