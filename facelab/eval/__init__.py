"""Measurements: the metrics every chapter reports, with their conventions stated.

* :mod:`facelab.eval.verification`: k-fold accuracy, ROC/DET, EER, TAR at FAR;
* :mod:`facelab.eval.identification`: rank-k accuracy, CMC, verification rate at FAR;
* :mod:`facelab.eval.detection`: AP at IoU 0.5, precision-recall, discrete ROC, WIDER-style splits;
* :mod:`facelab.eval.landmarks`: landmark NME;
* :mod:`facelab.eval.distances`: cosine similarity and the χ² distance;
* :mod:`facelab.eval.descriptors`: templates and flip-augmented embeddings;
* :mod:`facelab.eval.cli`: ``python -m facelab eval verification --scores FILE.csv``.

Conventions shared by all: a *score* is a similarity (higher = more likely the same person);
distances are negated before they become scores. ``labels`` are 1 for genuine (same
identity) and 0 for impostor pairs. ``folds`` are integer fold ids.
"""
