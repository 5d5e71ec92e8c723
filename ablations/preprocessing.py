"""Do colour augmentation or binarization beat plain images? (report Table 4, Figures 3-4)

Lineage: run B with no preprocessing, with ColorJitter(0.2, 0.2, 0.2, 0.1) + RandomGrayscale(0.1)
on the training images, and with OpenCV adaptive mean binarization (block 11, C 2, inverted)
applied to every split.
"""

from digitexp.config import apply_overrides, seed_config

# Run B: anchors 4..64, score threshold 0.05, batch 4; the rest as the final setup.
BASE = apply_overrides(
    seed_config(),
    {
        "model.anchor_sizes": (4, 8, 16, 32, 64),
        "model.box_score_thresh": 0.05,
        "train.batch_size": 4,
    },
)

VARIANTS = {
    "none": {"data.preprocess": "none"},
    "color_jitter_grayscale": {"data.preprocess": "color"},
    "adaptive_binary": {"data.preprocess": "binary"},
}

SEEDS = (0,)

PUBLISHED = {
    "none": {"val_map": 0.4588, "public_task1": 0.36, "public_task2": 0.77},
    "color_jitter_grayscale": {"val_map": 0.2545, "public_task1": None, "public_task2": None},
    "adaptive_binary": {"val_map": 0.4309, "public_task1": 0.32, "public_task2": 0.63},
}

REPORT_RUNS = {
    "none": "B: resnet50_fpn_stLR3_0.1_nms0.3_b4_e20",
    "color_jitter_grayscale": "B-color",
    "adaptive_binary": "B-binary",
}
