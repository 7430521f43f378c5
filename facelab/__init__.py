"""facelab: the library behind an executable book on lightweight face recognition.

Public API (no import side effects: nothing is downloaded, seeded or loaded on import)::

    from facelab import create_model, list_models
"""

from facelab.registry import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "register_model"]
