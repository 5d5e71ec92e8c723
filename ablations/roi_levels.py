"""Does RoI pooling over FPN levels 0-3 beat levels 0-1 only? (report Table 7, Figure 7)

Lineage: run E (the final setup) against run G, whose MultiScaleRoIAlign uses feature maps
'0' and '1' only.
"""

from digitexp.config import seed_config
from digitexp.lineage import E, G

BASE = seed_config()

VARIANTS = [E.variant("levels_0_1_2_3"), G.variant("levels_0_1")]

SEEDS = (0,)
REPORT_TABLE = 7
