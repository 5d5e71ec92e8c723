"""How synthetic images look: :class:`SynthOptions`, checked when built."""

from __future__ import annotations

from dataclasses import dataclass

from digitexp.errors import ConfigError


@dataclass(frozen=True)
class SynthOptions:
    """How the images look. Probabilities are per image."""

    min_height: int = 32  # image height range in pixels (SVHN-like crops), log-uniform
    max_height: int = 160
    min_digits: int = 1
    max_digits: int = 5
    min_digit_fraction: float = 0.4  # digit height / image height
    max_digit_fraction: float = 0.8
    min_aspect: float = 1.5  # height / width of a typical digit (not "1")
    max_aspect: float = 2.4
    hard_fraction: float = 0.12  # low-contrast foreground/background
    plate_prob: float = 0.3  # a plate (with optional border and screws) behind the number
    halo_prob: float = 0.15  # a drop shadow or outline around the digits
    clutter_prob: float = 0.35  # neighbouring characters cut by the image edges
    shape_prob: float = 0.25  # small non-digit shapes
    max_rotation: float = 6.0  # degrees
    max_shear: float = 0.12
    perspective: float = 0.03  # corner jitter as a fraction of the image height
    lighting_prob: float = 0.3  # a smooth illumination ramp
    blur_prob: float = 0.5
    lowres_prob: float = 0.2  # downscale and upscale again
    noise_prob: float = 0.7
    jpeg_prob: float = 0.25

    def __post_init__(self) -> None:
        problems = option_problems(self)
        if problems:
            raise ConfigError("invalid SynthOptions: " + "; ".join(problems))


def option_problems(o: SynthOptions) -> list[str]:
    problems: list[str] = []
    if o.min_height < 16:
        problems.append(f"min_height must be >= 16, got {o.min_height}")
    if o.min_height > o.max_height:
        problems.append(f"min_height ({o.min_height}) > max_height ({o.max_height})")
    if o.max_height > 4096:
        problems.append(f"max_height must be <= 4096, got {o.max_height}")
    if o.min_digits < 1:
        problems.append(f"min_digits must be >= 1, got {o.min_digits}")
    if o.min_digits > o.max_digits:
        problems.append(f"min_digits ({o.min_digits}) > max_digits ({o.max_digits})")
    if o.max_digits > 10:
        problems.append(f"max_digits must be <= 10, got {o.max_digits}")
    if not 0.1 <= o.min_digit_fraction <= o.max_digit_fraction <= 0.9:
        problems.append("need 0.1 <= min_digit_fraction <= max_digit_fraction <= 0.9")
    if not 0.5 <= o.min_aspect <= o.max_aspect <= 5.0:
        problems.append("need 0.5 <= min_aspect <= max_aspect <= 5")
    for name in (
        "hard_fraction",
        "plate_prob",
        "halo_prob",
        "clutter_prob",
        "shape_prob",
        "lighting_prob",
        "blur_prob",
        "lowres_prob",
        "noise_prob",
        "jpeg_prob",
    ):
        value = getattr(o, name)
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {value}")
    if not 0.0 <= o.max_rotation <= 20.0:
        problems.append(f"max_rotation must be in [0, 20] degrees, got {o.max_rotation}")
    if not 0.0 <= o.max_shear <= 0.5:
        problems.append(f"max_shear must be in [0, 0.5], got {o.max_shear}")
    if not 0.0 <= o.perspective <= 0.1:
        problems.append(f"perspective must be in [0, 0.1], got {o.perspective}")
    return problems
