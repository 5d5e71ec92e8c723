"""Does batch size 8 beat batch size 4? (report Table 3, Figure 2)

Lineage: run D (small anchors, score threshold 0.5, batch 4) against run E (the final setup,
batch 8). Both use anchors 4, 8, 12, 24, 48 and aspect ratios 0.25, 0.5, 1.0 (h/w).
"""

from digitexp.config import seed_config
from digitexp.lineage import D, E

BASE = seed_config()

VARIANTS = [D.variant("batch_4"), E.variant("batch_8")]

SEEDS = (0,)
REPORT_TABLE = 3
