"""Checkpoints: a JSON config plus safetensors weights. Loading never unpickles code.

``save_model(model, "run/student")`` writes ``run/student.<hash>.safetensors`` and then
``run/student.json``, which names the weights file; each is written to a temporary name and
renamed into place, and the previous weights file is removed only after the new JSON is in
place. A reader sees the previous checkpoint or the new one, never a mixture. The JSON holds
the format version, the model's constructor arguments (nested for a :class:`~mlff.Stack`)
and free-form metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mlff.models import ACEModel, OneBody, PairModel
from mlff.protocol import SiteModel
from mlff.stack import Stack

__all__ = ["FORMAT_VERSION", "model_config", "model_from_config", "save_model", "load_model", "resolve_checkpoint"]

FORMAT_VERSION = 1


def model_config(model: SiteModel) -> dict[str, Any]:
    """The constructor arguments of ``model`` as JSON-ready data."""
    if isinstance(model, Stack):
        return {"type": "Stack", "parts": [model_config(p) for p in model.parts]}
    if isinstance(model, OneBody):
        # A list of pairs: the element order is the order of the weights.
        return {"type": "OneBody", "e0": [[e, v] for e, v in model.reference_energies().items()]}
    if isinstance(model, PairModel):
        return {
            "type": "PairModel", "elements": list(model.elements), "cutoff": model.cutoff,
            "n_max": model.n_max, "repulsion": model.repulsion is not None,
            "r0": model.radial.transform.r0.tolist(),
        }
    if isinstance(model, ACEModel):
        return {
            "type": "ACEModel", "elements": list(model.elements), "cutoff": model.cutoff,
            "n_max": model.n_max, "l_max": model.l_max, "w_l": model.w_l,
            "max_degree": {str(k): v for k, v in model.max_degree.items()},
            "r0": model.radial.transform.r0.tolist(),
        }
    raise TypeError(f"no checkpoint format for {type(model).__name__}; known: Stack, OneBody, PairModel, ACEModel")


def model_from_config(config: dict[str, Any]) -> SiteModel:
    """Build a model (weights unset) from :func:`model_config` data."""
    kind = config.get("type")
    if kind == "Stack":
        return Stack([model_from_config(p) for p in config["parts"]])
    if kind == "OneBody":
        return OneBody(dict((e, float(v)) for e, v in config["e0"]))
    if kind == "PairModel":
        return PairModel(config["elements"], cutoff=config["cutoff"], n_max=config["n_max"],
                         repulsion=config["repulsion"], r0=torch.tensor(config["r0"], dtype=torch.float64))
    if kind == "ACEModel":
        return ACEModel(config["elements"], cutoff=config["cutoff"], n_max=config["n_max"], l_max=config["l_max"],
                        w_l=config["w_l"], max_degree={int(k): v for k, v in config["max_degree"].items()},
                        r0=torch.tensor(config["r0"], dtype=torch.float64))
    raise ValueError(f"unknown model type {kind!r} in checkpoint; known: Stack, OneBody, PairModel, ACEModel")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(model: SiteModel, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the JSON path."""
    base = Path(path)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_suffix("")
    weights = {k: v.detach().to("cpu", torch.float64).contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(k.encode() + v.numpy().tobytes() for k, v in sorted(weights.items()))).hexdigest()[:12]
    weights_name = f"{base.name}.{digest}.safetensors"
    document = {
        "format": "mlff-checkpoint",
        "format_version": FORMAT_VERSION,
        "model": model_config(model),
        "weights": weights_name,
        "metadata": metadata or {},
    }
    text = json.dumps(document, indent=2, sort_keys=True)
    json.loads(text)  # refuse metadata that does not round-trip before touching the disk
    json_path = base.with_suffix(".json")
    previous = None
    if json_path.is_file():
        try:
            previous = json.loads(json_path.read_text()).get("weights")
        except (json.JSONDecodeError, AttributeError):
            previous = None
    # Weights under a content-addressed name first, the JSON that points at them last: a crash
    # in between leaves the previous checkpoint whole.
    _atomic_write(base.parent / weights_name, lambda tmp: save_file(weights, tmp))
    _atomic_write(json_path, lambda tmp: Path(tmp).write_text(text))
    if previous and previous != weights_name and (base.parent / previous).is_file():
        (base.parent / previous).unlink()
    return json_path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint JSON for ``path``: a ``.json`` file, a run directory (``student.json``
    inside) or a path without suffix."""
    p = Path(path)
    if p.is_dir():
        p = p / "student.json"
    elif p.suffix != ".json":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}; expected a run directory with student.json or a .json file")
    return p


def load_model(path: str | os.PathLike) -> tuple[SiteModel, dict[str, Any]]:
    """(model in eval mode, metadata) from a checkpoint written by :func:`save_model`."""
    json_path = resolve_checkpoint(path)
    try:
        document = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path} is not valid JSON: {err}") from None
    if document.get("format") != "mlff-checkpoint":
        raise ValueError(f"{json_path} is not an mlff checkpoint (format={document.get('format')!r})")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{json_path} has format version {document['format_version']}; this mlff reads up to {FORMAT_VERSION}"
        )
    model = model_from_config(document["model"])
    weights_path = json_path.parent / document["weights"]
    if not weights_path.is_file():
        raise FileNotFoundError(f"checkpoint {json_path} names weights {weights_path}, which do not exist")
    try:
        state = load_file(str(weights_path))
        model.load_state_dict(state, strict=True)
    except Exception as err:  # safetensors and torch raise their own types
        raise ValueError(f"weights {weights_path} do not fit the model in {json_path}: {err}") from None
    return model.eval(), document.get("metadata", {})
