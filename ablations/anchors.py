"""Do digit-sized anchors and other aspect ratios raise val mAP? (report Table 5, Figure 5)

Lineage: runs B, C, E and F (digitexp.lineage). The report's rows also change the score
threshold and the batch size between runs; the variant names say every value that differs.
Aspect ratios are h/w as torchvision defines them: 0.25, 0.5, 1.0 are wide-or-square anchors,
1.0, 1.5, 2.0 are tall.
"""

from digitexp.config import seed_config
from digitexp.lineage import B, C, E, F

BASE = seed_config()

VARIANTS = [
    B.variant("sizes_4_8_16_32_64_score_0.05_batch_4"),
    C.variant("sizes_4_8_12_24_48_score_0.05_batch_4"),
    E.variant("sizes_4_8_12_24_48_ratios_0.25_0.5_1_score_0.5_batch_8"),
    F.variant("sizes_4_8_12_24_48_ratios_1_1.5_2_score_0.5_batch_8"),
]

SEEDS = (0,)
REPORT_TABLE = 5
