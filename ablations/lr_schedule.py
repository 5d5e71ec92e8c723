"""Does StepLR(3, 0.1) beat CosineAnnealingLR(T_max 20, eta_min 1e-7)? (report Table 2, Figure 1)

Lineage: the report's run B (resnet50_fpn_stLR3_0.1_nms0.3_b4_e20, StepLR) against the same
run with a cosine schedule.
"""

from digitexp.config import seed_config
from digitexp.lineage import B_COSINE, B

BASE = seed_config()

VARIANTS = [B.variant("step_3_0.1"), B_COSINE.variant("cosine_tmax_20_etamin_1e-7")]

SEEDS = (0,)
REPORT_TABLE = 2
