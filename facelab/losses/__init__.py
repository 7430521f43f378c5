"""Classification heads and losses for training face recognizers.

``ArcFaceHead`` (additive angular margin, Deng et al. 2019) and ``SoftmaxHead`` (a plain linear
layer) share one interface: ``head(embeddings, labels) -> logits`` for ``F.cross_entropy``.
"""

from facelab.losses.margin import ArcFaceHead, SoftmaxHead, arcface_logits

__all__ = ["ArcFaceHead", "SoftmaxHead", "arcface_logits"]
