"""How do the RoI heads' NMS and score thresholds move val mAP? (report Table 6, Figure 6)

Lineage: runs B-nms.5, B, C and D, all with batch 4. C also changes the anchor sizes, so the
score-threshold pair (C, D) is compared at anchors 4, 8, 12, 24, 48. `digitexp search` tunes
these two thresholds on a trained run without retraining.
"""

from digitexp.config import apply_overrides, seed_config

BASE = apply_overrides(seed_config(), {"train.batch_size": 4})

VARIANTS = {
    "nms_0.5_score_0.05_sizes_4_8_16_32_64": {
        "model.box_nms_thresh": 0.5,
        "model.box_score_thresh": 0.05,
        "model.anchor_sizes": (4, 8, 16, 32, 64),
    },
    "nms_0.3_score_0.05_sizes_4_8_16_32_64": {
        "model.box_nms_thresh": 0.3,
        "model.box_score_thresh": 0.05,
        "model.anchor_sizes": (4, 8, 16, 32, 64),
    },
    "nms_0.3_score_0.05_sizes_4_8_12_24_48": {
        "model.box_nms_thresh": 0.3,
        "model.box_score_thresh": 0.05,
        "model.anchor_sizes": (4, 8, 12, 24, 48),
    },
    "nms_0.3_score_0.5_sizes_4_8_12_24_48": {
        "model.box_nms_thresh": 0.3,
        "model.box_score_thresh": 0.5,
        "model.anchor_sizes": (4, 8, 12, 24, 48),
    },
}

SEEDS = (0,)

PUBLISHED = {
    "nms_0.5_score_0.05_sizes_4_8_16_32_64": {
        "val_map": 0.4611,
        "public_task1": 0.36,
        "public_task2": 0.76,
    },
    "nms_0.3_score_0.05_sizes_4_8_16_32_64": {
        "val_map": 0.4588,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
    "nms_0.3_score_0.05_sizes_4_8_12_24_48": {
        "val_map": 0.4619,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
    "nms_0.3_score_0.5_sizes_4_8_12_24_48": {
        "val_map": 0.4643,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
}

REPORT_RUNS = {
    "nms_0.5_score_0.05_sizes_4_8_16_32_64": "B-nms.5: resnet50_fpn_stLR3_0.1_nms0.5_b4_e20",
    "nms_0.3_score_0.05_sizes_4_8_16_32_64": "B: resnet50_fpn_stLR3_0.1_nms0.3_b4_e20",
    "nms_0.3_score_0.05_sizes_4_8_12_24_48": "C: ..._nms0.3_b4_e20_small_obj",
    "nms_0.3_score_0.5_sizes_4_8_12_24_48": "D: ..._nms0.3_b4_e20_small_obj_st0.5",
}
