"""Does RoI pooling over FPN levels 0-3 beat levels 0-1 only? (report Table 7, Figure 7)

Lineage: run E (the final setup) against run G, whose MultiScaleRoIAlign uses feature maps
'0' and '1' only.
"""

from digitexp.config import seed_config

BASE = seed_config()

VARIANTS = {
    "levels_0_1_2_3": {"model.roi_levels": (0, 1, 2, 3)},
    "levels_0_1": {"model.roi_levels": (0, 1)},
}

SEEDS = (0,)

PUBLISHED = {
    "levels_0_1_2_3": {"val_map": 0.4653, "public_task1": 0.36, "public_task2": 0.77},
    "levels_0_1": {"val_map": 0.4633, "public_task1": 0.35, "public_task2": 0.76},
}

REPORT_RUNS = {
    "levels_0_1_2_3": "E: resnet50_fpn_stLR3_0.1_nms0.3_b8_e20_small_obj_st0.5",
    "levels_0_1": "G: E with RoI levels '0', '1'",
}
