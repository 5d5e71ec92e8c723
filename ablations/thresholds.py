"""How do the RoI heads' NMS and score thresholds move val mAP? (report Table 6, Figure 6)

Lineage: runs B-nms.5, B, C and D, all with batch 4. C also changes the anchor sizes, so the
score-threshold pair (C, D) is compared at anchors 4, 8, 12, 24, 48. `digitexp search` tunes
these two thresholds on a trained run without retraining.
"""

from digitexp.config import seed_config
from digitexp.lineage import B_NMS_05, B, C, D

BASE = seed_config()

VARIANTS = [
    B_NMS_05.variant("nms_0.5_score_0.05_sizes_4_8_16_32_64"),
    B.variant("nms_0.3_score_0.05_sizes_4_8_16_32_64"),
    C.variant("nms_0.3_score_0.05_sizes_4_8_12_24_48"),
    D.variant("nms_0.3_score_0.5_sizes_4_8_12_24_48"),
]

SEEDS = (0,)
REPORT_TABLE = 6
