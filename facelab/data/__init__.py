"""Data layer: reading, detecting, aligning, preparing, protocols, loaders and synthetic data.

Raw data is reached only through :mod:`facelab.paths` (a data root); prepared data lives in the
user cache (``facelab.paths.prepared_dir``). Modules, by domain:

* reading and geometry: :mod:`~facelab.data.imageio`, :mod:`~facelab.data.detect`, :mod:`~facelab.data.align`
* getting and preparing: :mod:`~facelab.data.fetch`, :mod:`~facelab.data.selection`,
  :mod:`~facelab.data.prepare`, :mod:`~facelab.data.manifest`, :mod:`~facelab.data.inventory`,
  :mod:`~facelab.data.cli` (``python -m facelab data status|fetch|prepare``)
* protocols: :mod:`~facelab.data.lfw` (View 1, View 2), :mod:`~facelab.data.cfp` (FF, FP),
  :mod:`~facelab.data.pose_protocol` (SqueezeFacePoseNet, paper 001 Table 3),
  :mod:`~facelab.data.splits` (identity-disjoint cross-dataset training sets),
  :mod:`~facelab.data.widerface` (detection ground truth), :mod:`~facelab.data.pairs`
* loaders: :mod:`~facelab.data.datasets`, :mod:`~facelab.data.augment`
* synthetic data: :mod:`~facelab.data.masks`, :mod:`~facelab.data.nir`, :mod:`~facelab.data.scenes`

Nothing is imported here, so ``import facelab.data.lfw`` stays light.
"""
