"""dlib's pretrained ResNet face embedding: the book's packaged reference recognizer.

Model: ``dlib_face_recognition_resnet_model_v1`` (D. King, "High Quality Face Recognition
with Deep Metric Learning", dlib blog, 2017): a 29-layer ResNet (ResNet-34 with fewer filters)
trained with a metric loss on about 3 million faces; it maps a 150x150 chip, aligned with
dlib's 5-point landmark model, to a 128-d descriptor. Two faces are the same person when the
Euclidean distance of their descriptors is small (dlib suggests 0.6).

This is not one of the book's paper models and not an ``nn.Module`` (dlib runs it in C++),
so it is not in the model registry. Its weights ship in the ``face_recognition_models``
package and load offline.
"""

from __future__ import annotations

import warnings

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25
EMBEDDING_DIM = 128


class DlibFaceEmbedder:
    """Landmarks (5-point shape predictor) -> aligned chip -> 128-d descriptor.

    Build it with :meth:`from_package`; the constructor takes already loaded dlib objects.
    """

    def __init__(self, shape_predictor, recognizer):
        self.shape_predictor = shape_predictor
        self.recognizer = recognizer

    @classmethod
    def from_package(cls) -> DlibFaceEmbedder:
        """Load the shape predictor and the ResNet from ``face_recognition_models`` (offline)."""
        try:
            import dlib
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
                import face_recognition_models as frm
        except ImportError as err:
            raise ImportError("the reference recognizer needs dlib and its models: "
                              "pip install 'facelab[reference]' (or run `make venv`)") from err
        return cls(dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
                   dlib.face_recognition_model_v1(frm.face_recognition_model_location()))

    def _shape(self, image: np.ndarray, box: np.ndarray):
        import dlib

        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        return self.shape_predictor(image, dlib.rectangle(x1, y1, x2, y2))

    def chip(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The aligned ``uint8[150, 150, 3]`` chip the ResNet sees, for face ``box`` (xyxy)."""
        import dlib

        return np.asarray(dlib.get_face_chip(image, self._shape(image, box), size=CHIP_SIZE, padding=CHIP_PADDING))

    def embed(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``float32[128]`` descriptor of the face in ``box`` (xyxy) of ``uint8[H, W, 3]`` RGB ``image``."""
        image = np.ascontiguousarray(image)
        return np.asarray(self.recognizer.compute_face_descriptor(image, self._shape(image, box)), np.float32)
