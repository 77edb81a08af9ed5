"""Same data + params + seed give the same model bytes, in another process too (invariant 6).

A model's version is sha256 of its bytes, and the registry keeps a decided status (the
champion's PRODUCTION) only for the same version: anything in the bytes that varies between
two fits (a timing, a file mtime, a temp path, a set pickled in hash order) would make every
retraining of the champion's partition dethrone it. Each family is fitted here and in two
fresh interpreters with other ``PYTHONHASHSEED`` values, tiny for speed, on the production
feature columns: their number matters (a set of 35 exogenous columns in hash order changed
N-HiTS's weights in the last bits, a set of 7 did not).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clm_assets.features.indicators import EARLIEST_VALID_BAR, compute_features
from clm_assets.models.families import FAMILIES, model_class
from clm_assets_tests.factories import FAST_PARAMS, random_walk_bars

HORIZON = 4
SEED = 5
REPO = Path(__file__).parents[2]
HASH_SEEDS = ("4242", "7")
"""Two hash seeds that order the feature names differently (this process has a third)."""


def fit_bytes(family: str) -> bytes:
    """The bytes of one tiny fit of ``family`` on a fixed frame with :data:`SEED`."""
    bars = random_walk_bars(EARLIEST_VALID_BAR + 300, seed=2)
    frame = compute_features(bars, "BTC-USDT", HORIZON).iloc[EARLIEST_VALID_BAR:]
    model = model_class(family)(FAST_PARAMS[family], seed=SEED)
    model.fit(frame, HORIZON)
    return model.to_bytes()


def write_all(folder: str) -> None:
    """Entry point of the other process: one ``<family>.bin`` per family in ``folder``."""
    for family in FAMILIES:
        Path(folder, f"{family}.bin").write_bytes(fit_bytes(family))


@pytest.fixture(scope="module")
def other_processes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every family fitted in two fresh interpreters (own hash seeds and temp dirs), at once."""
    started = []
    for hash_seed in HASH_SEEDS:
        out = tmp_path_factory.mktemp(f"hash-seed-{hash_seed}")
        env = {
            **os.environ,
            "PYTHONHASHSEED": hash_seed,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        code = (
            "from clm_assets_tests.models.test_determinism import write_all; "
            f"write_all({str(out)!r})"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=out, env=env, stderr=subprocess.PIPE, text=True
        )
        started.append((out, process))
    for _, process in started:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    return [out for out, _ in started]


def _members(payload: bytes) -> dict[str, tuple] | None:
    """Header fields and content of each member of a tar payload; None if not a tar."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            return {
                m.name: (
                    (m.mtime, m.uid, m.gid, m.mode, m.pax_headers),
                    tar.extractfile(m).read() if m.isfile() else b"",
                )
                for m in tar.getmembers()
            }
    except tarfile.TarError:
        return None


def _differences(a: bytes, b: bytes) -> list[str]:
    """Where two model blobs differ: the card, or the header / content of a tar member."""
    (na,) = struct.unpack(">I", a[:4])
    (nb,) = struct.unpack(">I", b[:4])
    found = []
    if a[4 : 4 + na] != b[4 : 4 + nb]:
        found.append(f"card: {a[4 : 4 + na][:300]!r} vs {b[4 : 4 + nb][:300]!r}")
    ma, mb = _members(a[4 + na :]), _members(b[4 + nb :])
    if ma is None or mb is None:
        return [*found, "payload"] if a[4 + na :] != b[4 + nb :] else found
    if list(ma) != list(mb):
        found.append(f"members {list(ma)} vs {list(mb)}")
    for name in sorted(set(ma) & set(mb)):
        for part, x, y in zip(("header", "content"), ma[name], mb[name], strict=True):
            if x != y:
                found.append(f"{name}: {part}")
    return found or ["tar framing"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_gives_the_same_bytes_in_other_processes(
    family: str, other_processes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    here = fit_bytes(family)
    for folder in other_processes:
        there = (folder / f"{family}.bin").read_bytes()
        assert here == there, (folder.name, _differences(here, there))
