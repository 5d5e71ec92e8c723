"""How good, and how stable across seeds, is the report's final setup? (report Table 8, Figure 8)

Lineage: run E: no preprocessing beyond normalization, anchors 4, 8, 12, 24, 48, aspect ratios
0.25, 0.5, 1.0 (h/w), NMS 0.3, score threshold 0.5, batch 8, RoI levels 0-3; three seeds.
"""

from digitexp.config import seed_config
from digitexp.lineage import E

BASE = seed_config()

VARIANTS = [E.variant("final")]

SEEDS = (0, 1, 2)
REPORT_TABLE = 8
FINAL = True
