"""Face detection with MTCNN (Zhang et al. 2016), using the weights shipped in facenet-pytorch.

``load_mtcnn`` is the explicit step that loads the weights (from the installed package,
no download); ``detect_faces`` turns one image into :class:`FaceDetections`;
``select_face`` picks the face a dataset image is "about" (largest and most central).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one image.

    Attributes:
        boxes: ``float32[N, 4]`` xyxy pixel boxes.
        scores: ``float32[N]`` detector confidence in [0, 1].
        landmarks: ``float32[N, 5, 2]`` (x, y): left eye, right eye, nose, left/right mouth corner.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def load_mtcnn(device: str = "cpu", min_face_size: int = 20,
               thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)):
    """MTCNN with facenet-pytorch's packaged P/R/O-Net weights (loaded from the package, offline).

    Raises:
        ImportError: facenet-pytorch is missing, with the install command.
    """
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        raise ImportError("MTCNN needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                          "(or run `make venv`)") from err
    return MTCNN(keep_all=True, device=device, min_face_size=min_face_size, thresholds=list(thresholds),
                 post_process=False, select_largest=False)


def detect_faces(detector, image: np.ndarray) -> FaceDetections:
    """Detect faces in ``uint8[H, W, 3]`` RGB ``image`` (none in an image thinner than the smallest face)."""
    if min(image.shape[:2]) < getattr(detector, "min_face_size", 0):
        # facenet-pytorch builds an empty image pyramid then and fails in torch.cat; no face fits anyway.
        return FaceDetections.empty()
    boxes, scores, points = detector.detect(image, landmarks=True)
    if boxes is None:
        return FaceDetections.empty()
    return FaceDetections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                          np.asarray(points, np.float32))


def select_face(dets: FaceDetections, image_shape: tuple[int, ...]) -> int | None:
    """Index of the face a dataset image is about: large and near the centre, or None.

    Score = box area - 2 x squared distance of the box centre from the image centre (the rule
    InsightFace uses to pick the LFW subject among several detections).
    """
    if len(dets) == 0:
        return None
    h, w = image_shape[:2]
    b = dets.boxes.astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2 - w / 2, (b[:, 1] + b[:, 3]) / 2 - h / 2], axis=1)
    return int(np.argmax(area - 2.0 * (centre**2).sum(axis=1)))


def detect_faces_resized(detector, image: np.ndarray, max_side: int | None = None) -> FaceDetections:
    """Detect faces on a copy of ``image`` shrunk so its longer side is at most ``max_side``.

    Dataset images with one large face need no full-resolution pyramid: detecting on a smaller
    copy is several times faster. Boxes and landmarks are returned in ``image``'s pixels.
    """
    import cv2

    h, w = image.shape[:2]
    scale = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    if scale == 1.0:
        return detect_faces(detector, image)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    dets = detect_faces(detector, cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA))
    sx, sy = w / sw, h / sh
    boxes = dets.boxes * np.array([sx, sy, sx, sy], np.float32)
    return FaceDetections(boxes, dets.scores, dets.landmarks * np.array([sx, sy], np.float32))
