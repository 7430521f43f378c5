"""One name per chapter: the map from a paper to everything the book calls it.

Every chapter has one ``slug``; the rest is derived from it and its number, so a paper has one
name everywhere:

=========  ========================  ==========================  ==============================
paper      notebook                  results folder              experiments, modules
=========  ========================  ==========================  ==============================
000        book/01_lefv.ipynb        results/01_lefv/            ``lefv.*``, facelab.experiments.lefv
001        book/02_squeeze...ipynb   results/02_squeezefaceposenet/  ``squeezefaceposenet.*``
...
=========  ========================  ==========================  ==============================

Chapters are numbered in paper order (paper ``00k`` is chapter ``k + 1``); the getting-started
chapter (number 0) uses the packaged reference recognizer, whose "paper values" are its
documentation (``reference_dlib``). This module imports nothing from facelab but its errors, so
every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelab.errors import UnknownNameError


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book. ``paper``: the paper-values file stem; ``models``: the registered
    model names the chapter's paper defines (patterns allowed, e.g. ``stn_resnet_*``)."""

    number: int
    slug: str
    paper: str
    title: str
    models: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        """Results sub-folder and notebook stem, e.g. ``02_squeezefaceposenet``."""
        return f"{self.number:02d}_{self.slug}"

    @property
    def notebook(self) -> str:
        """The notebook's path relative to the repository root."""
        return f"book/{self.folder}.ipynb"

    @property
    def prefix(self) -> str:
        """Every experiment of the chapter is named ``<slug>.<what>``."""
        return f"{self.slug}."

    @property
    def module(self) -> str:
        """The module that registers the chapter's experiments."""
        return f"facelab.experiments.{self.slug}"

    def experiment(self, what: str) -> str:
        """The full experiment name, e.g. ``chapter.experiment('train.resnet50')``."""
        return f"{self.prefix}{what}"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(0, "getting_started", "reference_dlib", "Getting started: verifying faces with a packaged recognizer",
            ("sface", "mobilefacenet", "mobilenet_v2_face")),
    Chapter(1, "lefv", "000", "LEFV: a light detector, GAN face normalization and a multi-scale recognizer"),
    Chapter(2, "squeezefaceposenet", "001", "SqueezeFacePoseNet: lightweight face verification across poses",
            ("squeezefaceposenet*", "resnet50", "se_resnet50")),
    Chapter(3, "stn_alignment", "002", "Learning face alignment end to end with a spatial transformer",
            ("stn_resnet_*",)),
    Chapter(4, "nirvis_masked_hsst", "003", "NIR-VIS masked face recognition with heterogeneous semi-siamese training"),
    Chapter(5, "uniface", "004", "Uniface: one network for detection, landmarks and a 128-d embedding"),
)


def get(key: str | int) -> Chapter:
    """The chapter with this number, slug, paper id, results folder or experiment name."""
    for ch in CHAPTERS:
        if key in (ch.number, ch.slug, ch.paper, ch.folder) or (isinstance(key, str) and key.startswith(ch.prefix)):
            return ch
    raise UnknownNameError(f"no chapter {key!r}; chapters: " + ", ".join(f"{c.number} {c.slug} (paper {c.paper})"
                                                                  for c in CHAPTERS))
