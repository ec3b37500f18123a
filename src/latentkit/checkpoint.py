"""Checkpoints: tensors in safetensors, everything else in a JSON file beside them.

A checkpoint at step s is two files in ``<run>/checkpoints/``::

    step-00000100.safetensors   model/…  optimizer/…  rng/…   (tensors only)
    step-00000100.json          model name and config, training config, step, data
                                position, optimizer hyper-parameters, sha256 of the above

Both are written atomically (a temporary file in the same folder, flushed and fsynced,
then ``os.replace``; the folder is fsynced after). The tensor file is written first and
the JSON names its sha256, so the JSON is the commit marker: a run killed between the two
writes leaves no JSON for that step, and :func:`latest_checkpoint` finds the previous one.
Pruning removes an old checkpoint's JSON before its tensors, so a kill mid-prune never
leaves a committed checkpoint without its tensors, and only ever removes checkpoints of
lower steps than the one just written; temporaries and uncommitted tensor files
left by a killed run are removed by the next write.

Loading trusts nothing in the files (docs/reliability.md):

* nothing is unpickled: safetensors holds raw tensors and JSON holds plain values;
* only regular files are read (a link to one is followed), each opened non-blocking and
  checked with ``fstat`` before any byte is read, and of bounded size (the JSON
  :data:`MAX_JSON_BYTES`, the tensors this machine's memory): a FIFO, a device or a folder
  in a checkpoint's place is a :class:`CheckpointError`, never a hang;
* the JSON records the sha256 of the tensor file and of its own content (``info_sha256``,
  over the canonical JSON without that field: step, configs, everything else), and the
  latter is required: a truncated, corrupt or edited file is refused with
  :class:`CheckpointError`, and so is format version 1 (no hash of its content); the hashes
  catch accidents and edits, not a forger who recomputes them, which is why the fields are
  checked as well:
* the tensor file must be a bare file name beside the JSON (no paths), the step an int;
* :func:`latentkit.trained.load_trained_model` builds the named model on the meta device
  first (no memory) and refuses weights of other names or shapes, or not finite, before any
  real allocation; a config the model's validators refuse is a :class:`CheckpointError`.

``LATENTKIT_TEST_SLOW_CHECKPOINT=SECONDS`` (for tests only) sleeps between each checkpoint
file's temporary write and its rename, so a test can kill a run inside that window.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from latentkit.errors import CheckpointError
from latentkit.safe_io import (
    atomic_write_bytes,
    atomic_write_json,
    json_safe,
    memory_bytes,
    read_regular_file,
    writable_path,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_JSON_BYTES",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_weights",
    "checkpoint_paths",
    "flatten_optimizer_state",
    "json_safe",
    "latest_checkpoint",
    "list_checkpoints",
    "memory_bytes",
    "read_checkpoint",
    "read_regular_file",
    "resolve_checkpoint",
    "restore_rng",
    "rng_tensors",
    "subset",
    "unflatten_optimizer_state",
    "writable_path",
    "write_checkpoint",
]

FORMAT_VERSION = 2
"""Version 2 adds ``info_sha256``, the hash of the JSON's own content (step, configs, …)."""
READABLE_VERSIONS = (2,)
"""Version 1 recorded the tensor file's hash only, so an edit of its JSON (the step, the
configs) cannot be detected: it is refused, as is any other version."""
MAX_JSON_BYTES = 64 * 2**20
"""A checkpoint's JSON larger than this is refused before it is read (they are a few kB)."""
_STEP_FILE = re.compile(r"^step-(\d+)\.json$")
_TENSOR_FILE = re.compile(r"^step-(\d+)\.safetensors$")
_TEMPORARY = re.compile(r"^\.step-\d+\.(json|safetensors)\..*\.tmp$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SLOW_CHECKPOINT_ENV = "LATENTKIT_TEST_SLOW_CHECKPOINT"


def _info_digest(record: Mapping[str, Any]) -> str:
    """sha256 of a checkpoint's JSON content without ``info_sha256``: canonical JSON (sorted
    keys, no spaces) of the values as they read back, so writer and reader agree."""
    body = {k: v for k, v in record.items() if k != "info_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _slow_checkpoint_pause() -> float:
    text = os.environ.get(SLOW_CHECKPOINT_ENV, "")
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer/<index>/<key>``) and JSON.

    Returns ``(tensors, plain)`` where ``plain`` holds the param groups and any
    non-tensor per-parameter state, all JSON values.
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [_jsonable(dict(g)) for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "state_scalars": scalars}


def unflatten_optimizer_state(tensors: Mapping[str, Tensor], plain: Mapping[str, Any]) -> dict:
    """Invert :func:`flatten_optimizer_state` into a dict ``optimizer.load_state_dict`` takes.

    ``tensors`` are named ``optimizer/<index>/<key>`` or, prefix removed, ``<index>/<key>``.
    """
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.removeprefix("optimizer/").split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entry in plain.get("state_scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = []
    for g in plain["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _to_cpu(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def checkpoint_paths(directory: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """(tensor file, JSON file) of the checkpoint at ``step`` in ``directory``."""
    directory = Path(directory)
    stem = f"step-{step:08d}"
    return directory / f"{stem}.safetensors", directory / f"{stem}.json"


def write_checkpoint(
    directory: str | os.PathLike,
    step: int,
    tensors: Mapping[str, Tensor],
    info: Mapping[str, Any],
    *,
    keep_last: int | None = 2,
) -> Path:
    """Write one checkpoint (tensors first, then the JSON that commits it); return the JSON path.

    ``keep_last`` checkpoints are kept (``None`` keeps all): this one and the newest
    ``keep_last - 1`` of lower steps. Pruning never removes the checkpoint just written, nor
    any of a higher step (a later run's, which :class:`~latentkit.training.Trainer` refuses
    to write beside in the first place).
    """
    tensor_path, json_path = checkpoint_paths(directory, step)
    pause = _slow_checkpoint_pause()
    _remove_leftovers(Path(directory))
    blob = save_safetensors_bytes(_to_cpu(tensors), metadata={"latentkit_step": str(step)})
    atomic_write_bytes(tensor_path, blob, pause=pause)
    record = {
        **info,
        "format": "latentkit-checkpoint",
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "tensors": tensor_path.name,
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }
    record = json.loads(json.dumps(json_safe(record), allow_nan=False))  # as it will read back
    record["info_sha256"] = _info_digest(record)
    atomic_write_json(json_path, record, pause=pause)
    if keep_last is not None:
        older = [p for p in list_checkpoints(directory) if _step_of(p) < step]
        for old in older[: max(0, len(older) - (keep_last - 1))]:
            # The JSON first: a kill between the two leaves stray tensors, never a
            # committed checkpoint without them.
            for p in reversed(checkpoint_paths(directory, _step_of(old))):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    return json_path


def _remove_leftovers(directory: Path) -> None:
    """Delete what a killed writer left: temporaries, and tensor files no JSON commits (files
    and links only: a folder of such a name is no writer's leftover, and is left alone)."""
    if not directory.is_dir():
        return
    committed = {p.with_suffix(".safetensors").name for p in list_checkpoints(directory)}
    for p in directory.iterdir():
        stray = _TEMPORARY.match(p.name) or (_TENSOR_FILE.match(p.name) and p.name not in committed)
        if stray and (p.is_symlink() or not p.is_dir()):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _step_of(json_path: Path) -> int:
    m = _STEP_FILE.match(json_path.name)
    assert m is not None
    return int(m.group(1))


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Committed checkpoints (their JSON files) in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _STEP_FILE.match(p.name)]
    return sorted(found, key=_step_of)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest committed checkpoint of a run folder (or a checkpoints folder), or None."""
    run_dir = Path(run_dir)
    for directory in (run_dir / "checkpoints", run_dir):
        found = list_checkpoints(directory)
        if found:
            return found[-1]
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint's JSON path from a run folder, a checkpoints folder, or the file itself."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path} (looked for checkpoints/step-*.json)")
        return found
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def _read_info(json_path: Path) -> dict[str, Any]:
    """The checkpoint's JSON, checked: a latentkit checkpoint of a readable version whose
    content matches its ``info_sha256`` and whose step and tensor file name are well formed."""
    try:
        raw = read_regular_file(json_path, limit=MAX_JSON_BYTES, what="checkpoint")
        info = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise CheckpointError(f"cannot read checkpoint {json_path}: nested too deeply") from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise CheckpointError(f"cannot read checkpoint {json_path}: {_one_line(exc)}") from None
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{json_path} is not a latentkit checkpoint (a JSON {type(info).__name__}, "
            "expected an object)"
        )
    if info.get("format") != "latentkit-checkpoint":
        raise CheckpointError(f"{json_path} is not a latentkit checkpoint (no 'format' marker)")
    version = info.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{json_path} has format version {version!r}; this latentkit reads versions "
            f"{list(READABLE_VERSIONS)}"
        )
    if not isinstance(info.get("info_sha256"), str) or info["info_sha256"] != _info_digest(info):
        raise CheckpointError(
            f"{json_path} does not match the sha256 of its content recorded in it "
            "(edited or corrupt after it was written)"
        )
    step = info.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{json_path}: 'step' must be an int ≥ 0, got {step!r}")
    name = info.get("tensors")
    if not isinstance(name, str) or not _TENSOR_FILE.match(name):
        raise CheckpointError(
            f"{json_path}: 'tensors' must name a step-N.safetensors file beside it, got {name!r}"
        )
    digest = info.get("tensors_sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise CheckpointError(f"{json_path}: 'tensors_sha256' is not 64 hex digits: {digest!r}")
    return info


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON (checkpoints write NaN and inf as null)")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load ``(tensors, info)`` from a checkpoint (JSON path, tensor path, or run folder).

    The JSON must be well formed and match its own sha256, and the tensor file the sha256
    the JSON records, else :class:`CheckpointError`.
    """
    json_path = resolve_checkpoint(path)
    info = _read_info(json_path)
    tensor_path = json_path.parent / info["tensors"]
    try:
        blob = read_regular_file(tensor_path, limit=memory_bytes(), what="checkpoint tensors")
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint tensors {tensor_path} cannot be read: {_one_line(exc)}"
        ) from None
    if hashlib.sha256(blob).hexdigest() != info["tensors_sha256"]:
        raise CheckpointError(
            f"{tensor_path} does not match the sha256 recorded in {json_path.name} "
            "(corrupt, or replaced after the checkpoint was written)"
        )
    try:
        tensors = load_safetensors_bytes(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{tensor_path} is not a valid safetensors file: {_one_line(exc)}"
        ) from None
    return tensors, info


def subset(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors whose names start with ``prefix + '/'``, with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def rng_tensors(prefix: str = "rng") -> dict[str, Tensor]:
    """This process's torch RNG states (CPU, and every CUDA device) as uint8 tensors."""
    out = {f"{prefix}/cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"{prefix}/cuda{i}"] = state
    return out


def restore_rng(tensors: Mapping[str, Tensor]) -> None:
    """Set the RNG states saved by :func:`rng_tensors` (without the prefix)."""
    torch.set_rng_state(tensors["cpu"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("cuda"))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def check_weights(model: torch.nn.Module, weights: Mapping[str, Tensor], *, where: str) -> None:
    """Refuse ``weights`` that are not exactly ``model``'s state (names and shapes) or hold NaN
    or inf, with a :class:`CheckpointError` naming the first difference."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: the stored weights do not fit the model: missing {missing[:3]}"
            f"{' …' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
            f"{' …' if len(extra) > 3 else ''}"
        )
    for key, want in expected.items():
        got = weights[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{where}: weight {key!r} has shape {tuple(got.shape)}, the model's is "
                f"{tuple(want.shape)}"
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{where}: weight {key!r} holds NaN or inf values")
