"""Chapter 4's Table II with the paper's MobileFaceNet as the frozen backbone (``nirvis_masked_hsst.table2_mobilefacenet``).

The same four losses, plain and with HSST, the same stand-ins, splits, heads and schedule as
``nirvis_masked_hsst.table2`` (:mod:`facelab.experiments.nirvis_masked_hsst_table2`), with SFace's network
replaced by the MobileFaceNet that :mod:`facelab.experiments.nirvis_masked_hsst_backbone` distils from SFace
on identities disjoint from all three stand-ins (the backbone of ``nirvis_masked_hsst.table1_mobilefacenet``).
The paper's Table II backbone is a ResNet-50 (its reference [24]); neither of ours is one: SFace has the
knowledge of millions of faces, this MobileFaceNet the architecture of the paper's Table I and what ~11k
faces taught it through SFace.

At ``small`` it runs three of the ten splits (Table I's number; the SFace track runs all ten for Fig. 4):
the backbone's embeddings take minutes, the 8 heads per split ~5 min on one core.

It registers from its own module, so that Table II's module, on whose source the stored SFace result
depends, stays unchanged.
"""

from __future__ import annotations

import dataclasses

from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.nirvis_masked_hsst_table2 import CH, Table2Config, configure_table2, run_table2


def configure_table2_mobilefacenet(profile: str) -> Table2Config:
    """Table II's configuration at ``profile`` with the distilled MobileFaceNet as the backbone (three splits at
    ``small``)."""
    config = dataclasses.replace(configure_table2(profile), backbone="mobilefacenet")
    if profile == "small":
        config = dataclasses.replace(config, n_splits=3)  # Table I's three splits; the SFace track runs ten
    return config


def run_table2_mobilefacenet(config: Table2Config, ctx: RunContext):
    """:func:`run_table2` on the distilled MobileFaceNet, with the backbone named for what it is (``run_table2``'s
    label describes its SFace track)."""
    if config.backbone != "mobilefacenet":
        raise ValueError(f"this experiment runs the MobileFaceNet backbone, got backbone={config.backbone!r}")
    metrics, arrays, digest = run_table2(config, ctx)
    from facelab.experiments.nirvis_masked_hsst_backbone import backbone_config

    metrics["backbone"] = ("MobileFaceNet distilled from SFace (frozen) + residual head (trained): partial "
                           "fine-tuning")
    # the same distillation (configuration, seed, checkpoint) as nirvis_masked_hsst.table1_mobilefacenet, whose
    # result records the pool, the loss curve and the training time
    metrics["backbone_pretraining"] = {"config": str(backbone_config(config.data_profile)),
                                       "recorded_in": CH.experiment("table1_mobilefacenet")}
    return metrics, arrays, digest


register_experiment(Experiment(
    name=CH.experiment("table2_mobilefacenet"), chapter=CH.folder,
    description="Table II on the stand-ins with the distilled MobileFaceNet as the frozen backbone: softmax / AM / "
                "Arc / triplet, plain and with HSST, trained masked on the CASIA stand-in, tested on all three",
    configure=configure_table2_mobilefacenet, run=run_table2_mobilefacenet))

__all__ = ["configure_table2_mobilefacenet", "run_table2_mobilefacenet"]
