"""Does StepLR(3, 0.1) beat CosineAnnealingLR(T_max 20, eta_min 1e-7)? (report Table 2, Figure 1)

Lineage: the report's run B (resnet50_fpn_stLR3_0.1_nms0.3_b4_e20) against the same run with
a cosine schedule.
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
    "step_3_0.1": {"train.scheduler": "step", "train.step_size": 3, "train.gamma": 0.1},
    "cosine_tmax_20_etamin_1e-7": {
        "train.scheduler": "cosine",
        "train.t_max": 20,
        "train.eta_min": 1e-7,
    },
}

SEEDS = (0,)

PUBLISHED = {
    "step_3_0.1": {"val_map": 0.4588, "public_task1": 0.36, "public_task2": 0.77},
    "cosine_tmax_20_etamin_1e-7": {"val_map": 0.4535, "public_task1": 0.35, "public_task2": 0.76},
}

REPORT_RUNS = {
    "step_3_0.1": "B: resnet50_fpn_stLR3_0.1_nms0.3_b4_e20 (StepLR)",
    "cosine_tmax_20_etamin_1e-7": "B-cos: CosineAnnealingLR",
}
