"""Helpers that chapter notebooks call to say where their numbers come from."""

from __future__ import annotations

import datetime as _dt
import os

from facelab import __version__
from facelab.config import check_device, check_profile


def run_header(*, profile: str, device: str, seed: int, data_root: str | None = None) -> str:
    """Markdown line: which profile, machine, device, seed, time and code produced this page.

    Also validates the parameters, so a wrong ``profile`` or ``device`` fails in the first cell
    with a message naming the choices.
    """
    import torch

    from facelab.paths import data_roots
    from facelab.results import cpu_model, environment

    check_profile(profile)
    check_device(device)
    env = environment(device)
    commit = (env.get("git_commit") or "unknown")[:10] + (" + local changes" if env.get("git_dirty") else "")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    hardware = env.get("gpu") or f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    root = data_roots(data_root)[0]
    return (f"**This page was executed at profile `{profile}`** on {hardware} (device `{device}`, seed {seed}) "
            f"on {when} with facelab {__version__} (commit {commit}); data root `{root}`.")


def show_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def config_table(config):
    """A configuration dataclass as a small two-column table (setting | value), for a page that
    says what a run used without printing a raw Python object."""
    import dataclasses

    import pandas as pd

    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a configuration dataclass, got {type(config).__name__}")
    rows = [{"setting": f.name, "value": _plain(getattr(config, f.name))} for f in dataclasses.fields(config)]
    return pd.DataFrame(rows).set_index("setting")


def _plain(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, (tuple, list)):
        return ", ".join(_plain(v) for v in value) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
