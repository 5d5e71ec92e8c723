"""Datasets: HW2/COCO loader and validation, synthetic generator, SVHN converter, transforms."""
