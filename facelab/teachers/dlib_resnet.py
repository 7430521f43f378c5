"""dlib's ResNet (:mod:`facelab.models.dlib_resnet`) as a :class:`~facelab.teachers.Teacher` on our crops.

dlib's network takes a 150x150 chip that ``dlib.get_face_chip`` cuts around dlib's *own* 5 landmarks
(the outer and inner corners of both eyes and the base of the nose, padding 0.25), not the ArcFace
template of our 112x112 crops. From an aligned crop we reproduce dlib's pipeline inside the crop:

1. pad the crop by :data:`CROP_BORDER` pixels on every side, replicating its edge rows and columns
   (as ``facelab.data.prepare`` fills outside the image): dlib's chip reaches a few pixels past the
   crop's bottom edge, and replicated pixels disturb the network less than black ones;
2. run dlib's 5-point shape predictor in the fixed box :data:`CROP_FACE_BOX`, which is where an
   MTCNN face box (what the getting-started pipeline gives dlib) lands in an ArcFace crop;
3. ``dlib.get_face_chip(size=150, padding=0.25)`` and the ResNet, one batch per call.

What that costs in accuracy: the chip is resampled from the 112 crop (the chip's face region covers
about 96 crop pixels, so it is upsampled ~1.56x, where the original-image pipeline of
:mod:`facelab.experiments.getting_started` samples LFW's 250x250 images directly), its bottom rows
are replicated border, and the ArcFace alignment has already rotated the face, so dlib's
similarity transform is applied to an interpolated image twice. ``getting_started.teacher_lfw_dlib`` measures the
net effect against the getting-started row on the same View 2 pairs.

The getting-started pipeline (image + MTCNN box -> :meth:`DlibFaceEmbedder.embed`) is unchanged.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from facelab.models.dlib_resnet import CHIP_PADDING, CHIP_SIZE, DlibFaceEmbedder
from facelab.teachers import Teacher, TeacherUnavailableError

#: Face box (x1, y1, x2, y2) given to dlib's shape predictor in a 112x112 ArcFace crop: the median
#: MTCNN box of the prepared LFW crops mapped into the crop (centre (55, 64.5), 78 x 104 pixels);
#: ``tests/test_teachers.py`` recomputes it from the smoke crops.
CROP_FACE_BOX = (16, 12, 94, 117)
#: Replicated border added around the crop before the chip is cut (pixels per side).
CROP_BORDER = 16
#: Bump when the crop -> chip steps change (part of :attr:`DlibTeacher.version`).
CROP_METHOD = "crop-v1"


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DlibTeacher(Teacher):
    """dlib's 128-d descriptor of aligned crops (crop -> dlib landmarks -> 150x150 chip -> ResNet).

    Args:
        embedder: loaded dlib models (default: :meth:`DlibFaceEmbedder.from_package`).

    dlib's CPU build runs one thread and holds the GIL: run processes to use more cores.
    ``embed(uint8[N, 112, 112, 3] RGB)`` -> ``float32[N, 128]`` unit-norm descriptors (dlib's
    descriptors have norms near 1 already; its own score is the Euclidean distance, which for unit
    vectors is a monotone function of the cosine).
    """

    name = "dlib"

    def __init__(self, *, embedder: DlibFaceEmbedder | None = None) -> None:
        try:
            self.embedder = embedder or DlibFaceEmbedder.from_package()
        except ImportError as err:
            raise TeacherUnavailableError(str(err)) from err
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
                import face_recognition_models as frm
            digest = hashlib.sha256()
            for path in (frm.face_recognition_model_location(), frm.pose_predictor_five_point_model_location()):
                digest.update(_file_digest(path).encode())
            self._version = f"dlib-{digest.hexdigest()[:16]}-{CROP_METHOD}"
        return self._version

    def chip(self, crop: np.ndarray) -> np.ndarray:
        """``uint8[112, 112, 3]`` RGB ArcFace crop -> the ``uint8[150, 150, 3]`` chip dlib's ResNet sees."""
        import dlib

        b = CROP_BORDER
        padded = cv2.copyMakeBorder(np.ascontiguousarray(crop), b, b, b, b, cv2.BORDER_REPLICATE)
        x1, y1, x2, y2 = CROP_FACE_BOX
        shape = self.embedder.shape_predictor(padded, dlib.rectangle(x1 + b, y1 + b, x2 + b, y2 + b))
        return np.asarray(dlib.get_face_chip(padded, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        if crops.dtype != np.uint8:  # dlib takes uint8 only
            crops = np.clip(np.rint(crops), 0, 255).astype(np.uint8)
        chips = [self.chip(c) for c in crops]
        return np.asarray(self.embedder.recognizer.compute_face_descriptor(chips), np.float32).reshape(len(chips), -1)

