"""Training: one explicit loop (:mod:`facelab.train.loop`)."""
