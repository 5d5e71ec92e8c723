"""Does batch size 8 beat batch size 4? (report Table 3, Figure 2)

Lineage: run D (small anchors, score threshold 0.5, batch 4) against run E (the final setup,
batch 8). Both use anchors 4, 8, 12, 24, 48 and aspect ratios 0.25, 0.5, 1.0 (h/w).
"""

from digitexp.config import seed_config

BASE = seed_config()

VARIANTS = {
    "batch_4": {"train.batch_size": 4},
    "batch_8": {"train.batch_size": 8},
}

SEEDS = (0,)

PUBLISHED = {
    "batch_4": {"val_map": 0.4643, "public_task1": 0.36, "public_task2": 0.77},
    "batch_8": {"val_map": 0.4653, "public_task1": 0.36, "public_task2": 0.77},
}

REPORT_RUNS = {
    "batch_4": "D: resnet50_fpn_stLR3_0.1_nms0.3_b4_e20_small_obj_st0.5",
    "batch_8": "E: resnet50_fpn_stLR3_0.1_nms0.3_b8_e20_small_obj_st0.5",
}
