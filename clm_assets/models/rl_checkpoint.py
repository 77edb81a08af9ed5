"""RLlib checkpoints as bytes: pack the RLModule part of a saved checkpoint
(``learner_group/learner/rl_module``: weights and spaces) into a reproducible tar.gz, and
restore the RLModule from those bytes without Ray running.

The rest of an algorithm checkpoint is left out: it holds RLlib's metrics with wall-clock
timers, which would make two fits of the same data and seed differ in bytes and version.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from clm_assets.models.base import ModelError
from clm_assets.models.ray_session import QuietLoggers
from clm_assets.models.tarball import pack_directory

MODULE_SUBDIR = "learner_group/learner/rl_module/default_policy"
"""Where ``algo.save_to_path`` puts the single-agent RLModule inside a checkpoint."""
PACKED_MODULE_ROOT = "learner_group/learner/rl_module"
"""The directory packed when only the RLModule is kept."""


def pack_checkpoint(checkpoint: Path) -> bytes:
    """tar.gz of the RLModule part (:data:`PACKED_MODULE_ROOT`) of a checkpoint saved by
    ``algo.save_to_path``."""
    if not (checkpoint / MODULE_SUBDIR).is_dir():
        raise ModelError(f"ppo: checkpoint has no RLModule at {MODULE_SUBDIR}")
    return pack_directory(checkpoint / PACKED_MODULE_ROOT, compress=True)


def restore_module(blob: bytes) -> Any:
    """The RLModule (in eval mode) from bytes made by :func:`pack_checkpoint`."""
    try:
        from ray.rllib.core.rl_module.rl_module import RLModule
    except ImportError as exc:  # pragma: no cover
        raise ModelError(f"ppo: ray[rllib] is not importable: {exc}") from exc
    tmp = tempfile.mkdtemp(prefix="clmppo_ck")
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        path = Path(tmp) / "default_policy"
        if not path.is_dir():
            raise ModelError("ppo: bytes hold no RLModule checkpoint")
        with QuietLoggers("ray", "ray.rllib"):  # RLlib warns about its own deprecated ctor
            module = RLModule.from_checkpoint(str(path))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"ppo: cannot restore the RLModule: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    module.eval()
    return module
