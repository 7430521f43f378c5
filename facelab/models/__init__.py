"""Paper models, one per file; importing this package registers them all."""

from facelab.models import squeezefaceposenet  # noqa: F401
from facelab.models import resnet_baselines  # noqa: F401
from facelab.models import stn  # noqa: F401
from facelab.models import sface  # noqa: F401
from facelab.models import mobilefacenet  # noqa: F401
from facelab.models import mobilenet_v2_face  # noqa: F401
from facelab.models import lefv_detector  # noqa: F401
from facelab.models import lefv_recognizer  # noqa: F401
from facelab.models import lefv_normalizer  # noqa: F401
from facelab.models import uniface  # noqa: F401
