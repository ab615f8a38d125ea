"""Where an episode's files are: the recording a dataset row names, and the folder its media resolve against.

Datasets store ``episode_path`` as written by stage 1: absolute, or relative to a folder the user names
later (``episode_root``). Relative media URIs inside a recording resolve against the recording's own folder.
Either may be a URL (``s3://bucket/prefix``): see :mod:`owa.data.storage`.
"""

from __future__ import annotations

import os

from owa.data import storage

__all__ = ["episode_base_dir", "resolve_episode_path"]


def resolve_episode_path(episode_path: str, episode_root: str | os.PathLike[str] | None = None) -> str:
    """The recording a dataset row names, as a path to open.

    Absolute paths and URLs are kept; relative ones resolve against ``episode_root`` (a folder or a URL
    prefix; default: the current directory, read at call time) into an absolute path whose symlinks are
    kept, not resolved (``os.path.abspath``), or a URL inside the prefix. Relative media URIs inside the
    recording then resolve against this path's folder (:func:`episode_base_dir`).

    >>> resolve_episode_path("a/../b/ep.mcap", "/data")
    '/data/b/ep.mcap'
    """
    if os.path.isabs(episode_path) or storage.is_url(episode_path):
        return episode_path
    root = os.getcwd() if episode_root is None else os.fspath(episode_root)
    if storage.is_url(root):
        return storage.join(root, episode_path)
    return os.path.abspath(os.path.join(root, episode_path))


def episode_base_dir(episode_path: str | os.PathLike[str]) -> str:
    """The absolute folder (or URL prefix) of a recording: what its relative media URIs resolve against."""
    return storage.dirname(os.fspath(episode_path))
