"""Checkpoints on the Hugging Face hub: ``musgen.load("org/name")`` / ``--checkpoint org/name``.

Only an explicit id of the form ``org/name`` that is not a local path is looked up, and only the
files a portable checkpoint is read from are fetched (settings as JSON/YAML, weights as safetensors:
never a pickle, never code). With ``HF_HUB_OFFLINE=1`` (or no network) a model already in the local
hub cache loads from there. The snapshot's commit is recorded, so samples can name what made them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musgen import __version__
from musgen.errors import MusgenError, first_line

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
CHECKPOINT_FILES = ["*.json", "*.yaml", "*.safetensors"]  # what load_portable and the families read


@dataclass(frozen=True)
class Located:
    """A checkpoint on this machine and where it came from (``Generator.source``)."""

    path: Path
    source: dict[str, Any]


def looks_like_hub_id(text: str) -> bool:
    """``org/name``: two parts of letters, digits, ``_ . -``, no ``..`` (never a path that exists)."""
    return bool(HUB_ID.match(text)) and ".." not in text and not text.endswith(".")


def locate(path: str | Path, revision: str | None = None) -> Located:
    """A local path as it is, or a hub id (``org/name`` that is not a local path) downloaded into, or
    found in, the hub cache. ``revision``: a branch, tag or commit of the hub repository."""
    text = str(path)
    if Path(path).exists() or not looks_like_hub_id(text):
        if revision is not None:
            raise MusgenError(f"--revision applies to a hub id (org/name), not to the local path {text}")
        return Located(Path(path), {"path": text})
    return download(text, revision)


def download(repo_id: str, revision: str | None = None) -> Located:
    """``snapshot_download`` of a checkpoint's files; an unknown id, revision or a missing network
    (with nothing cached) is one MusgenError line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    log.info("checkpoint %s: resolving it on the Hugging Face hub", repo_id)
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=CHECKPOINT_FILES,
            library_name="musgen",
            library_version=__version__,
        )
    except LocalEntryNotFoundError:
        raise MusgenError(
            f"checkpoint {repo_id} is not a local path, and the hub model {repo_id}"
            f"{'@' + revision if revision else ''} is neither reachable nor in the local hub cache"
        ) from None
    except (HfHubHTTPError, HFValidationError, OSError, ValueError) as err:
        raise MusgenError(
            f"checkpoint {repo_id} is not a local path, and the hub says: {first_line(err)}"
        ) from None
    snapshot = Path(str(folder))
    return Located(snapshot, {"hub_id": repo_id, "revision": snapshot.name, "path": str(snapshot)})
