"""Synthetic SVHN-like house-number images written in the HW2 COCO layout.

The embedded default dataset: it needs no download and generates an HW2-sized set (46k
images) in about a minute on a small CPU machine.

Each image shows a house number of 1-5 digits drawn with a font that matplotlib ships
(:mod:`.fonts`), on a textured background, sometimes on a plate, with clutter, a mild warp,
lighting, blur, low resolution, noise and JPEG artefacts (:mod:`.render`); :mod:`.writer` lays
out the splits::

    out/train.json  out/train/1.png  out/train/2.png ...
    out/valid.json  out/valid/1.png ...
    out/test.json   out/test/1.png ...
"""

from digitexp.data.synth.fonts import FontInfo, available_fonts, font_dir
from digitexp.data.synth.options import SynthOptions
from digitexp.data.synth.render import RenderedSample, render_layers, render_sample
from digitexp.data.synth.writer import (
    HW2_COUNTS,
    SplitSummary,
    SynthSummary,
    generate,
    image_rng,
    split_index,
)

__all__ = [
    "HW2_COUNTS",
    "FontInfo",
    "RenderedSample",
    "SplitSummary",
    "SynthOptions",
    "SynthSummary",
    "available_fonts",
    "font_dir",
    "generate",
    "image_rng",
    "render_layers",
    "render_sample",
    "split_index",
]
