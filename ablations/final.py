"""How good, and how stable across seeds, is the report's final setup? (report Table 8, Figure 8)

Lineage: run E: no preprocessing beyond normalization, anchors 4, 8, 12, 24, 48, aspect ratios
0.25, 0.5, 1.0 (h/w), NMS 0.3, score threshold 0.5, batch 8, RoI levels 0-3; three seeds.
"""

from digitexp.config import seed_config

BASE = seed_config()

VARIANTS = {"final": {}}

SEEDS = (0, 1, 2)

PUBLISHED = {"final": {"val_map": 0.4653, "public_task1": 0.36, "public_task2": 0.77}}

REPORT_RUNS = {"final": "E: resnet50_fpn_stLR3_0.1_nms0.3_b8_e20_small_obj_st0.5"}
