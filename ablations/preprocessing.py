"""Do colour augmentation or binarization beat plain images? (report Table 4, Figures 3-4)

Lineage: run B with no preprocessing, with ColorJitter(0.2, 0.2, 0.2, 0.1) + RandomGrayscale(0.1)
on the training images, and with OpenCV adaptive mean binarization (block 11, C 2, inverted)
applied to every split.
"""

from digitexp.config import seed_config
from digitexp.lineage import B_BINARY, B_COLOR, B

BASE = seed_config()

VARIANTS = [
    B.variant("none"),
    B_COLOR.variant("color_jitter_grayscale"),
    B_BINARY.variant("adaptive_binary"),
]

SEEDS = (0,)
REPORT_TABLE = 4
