"""Run profiles shared by every chapter.

``smoke``  CI: a chapter in at most 3 minutes on 2 CPU cores; tiny real subsets; trains for
           real but checks the pipeline, not accuracy.
``small``  the book's default on a CPU laptop: a chapter in at most 15 minutes; experiments
           longer than that run once through ``python -m facelab run`` and the chapter loads
           their committed results.
``full``   all available data; meant for a GPU.

Each chapter's experiment dataclass has a ``for_profile(profile, ...)`` constructor that
maps a profile to concrete sizes; this module only names and checks profiles.
"""

from __future__ import annotations

from facelab.errors import UsageError

PROFILES: tuple[str, ...] = ("smoke", "small", "full")
DEFAULT_PROFILE = "small"

#: Wall-clock budget of one chapter per profile on 2 CPU cores, in seconds (None: no budget).
CHAPTER_BUDGET_S: dict[str, float | None] = {"smoke": 180.0, "small": 900.0, "full": None}


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise a :class:`~facelab.errors.UsageError` (a ValueError) that lists the choices."""
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def check_device(device: str) -> str:
    """Validate a device string ('cpu', 'cuda', 'cuda:1'); say how to fix a missing GPU."""
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device={device!r} was asked for but no CUDA GPU is visible: use device='cpu'")
        return device
    raise UsageError(f"unknown device {device!r}: use 'cpu' or 'cuda[:N]'")
