"""Do digit-sized anchors and other aspect ratios raise val mAP? (report Table 5, Figure 5)

Lineage: runs B, C, E and F. The report's rows also change the score threshold and the batch
size between runs; the variant names say every value that differs. Aspect ratios are h/w as
torchvision defines them: 0.25, 0.5, 1.0 are wide-or-square anchors, 1.0, 1.5, 2.0 are tall.
"""

from digitexp.config import seed_config

BASE = seed_config()

VARIANTS = {
    "sizes_4_8_16_32_64_score_0.05_batch_4": {
        "model.anchor_sizes": (4, 8, 16, 32, 64),
        "model.aspect_ratios": (0.25, 0.5, 1.0),
        "model.box_score_thresh": 0.05,
        "train.batch_size": 4,
    },
    "sizes_4_8_12_24_48_score_0.05_batch_4": {
        "model.anchor_sizes": (4, 8, 12, 24, 48),
        "model.aspect_ratios": (0.25, 0.5, 1.0),
        "model.box_score_thresh": 0.05,
        "train.batch_size": 4,
    },
    "sizes_4_8_12_24_48_ratios_0.25_0.5_1_score_0.5_batch_8": {
        "model.anchor_sizes": (4, 8, 12, 24, 48),
        "model.aspect_ratios": (0.25, 0.5, 1.0),
        "model.box_score_thresh": 0.5,
        "train.batch_size": 8,
    },
    "sizes_4_8_12_24_48_ratios_1_1.5_2_score_0.5_batch_8": {
        "model.anchor_sizes": (4, 8, 12, 24, 48),
        "model.aspect_ratios": (1.0, 1.5, 2.0),
        "model.box_score_thresh": 0.5,
        "train.batch_size": 8,
    },
}

SEEDS = (0,)

PUBLISHED = {
    "sizes_4_8_16_32_64_score_0.05_batch_4": {
        "val_map": 0.4588,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
    "sizes_4_8_12_24_48_score_0.05_batch_4": {
        "val_map": 0.4619,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
    "sizes_4_8_12_24_48_ratios_0.25_0.5_1_score_0.5_batch_8": {
        "val_map": 0.4653,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
    "sizes_4_8_12_24_48_ratios_1_1.5_2_score_0.5_batch_8": {
        "val_map": 0.4671,
        "public_task1": 0.36,
        "public_task2": 0.77,
    },
}

REPORT_RUNS = {
    "sizes_4_8_16_32_64_score_0.05_batch_4": "B ('Normal Anchor')",
    "sizes_4_8_12_24_48_score_0.05_batch_4": "C: ..._small_obj ('Small Anchor')",
    "sizes_4_8_12_24_48_ratios_0.25_0.5_1_score_0.5_batch_8": "E ('Horizontal Anchor')",
    "sizes_4_8_12_24_48_ratios_1_1.5_2_score_0.5_batch_8": "F: ..._st0.5_ver ('Vertical Anchor')",
}
