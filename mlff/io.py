"""Checkpoints: a JSON config plus safetensors weights. Loading never unpickles code.

``save_model(model, "run/student")`` writes ``run/student.<hash>.safetensors`` and then
``run/student.json``, which names the weights file; each is written to a temporary name and
renamed into place, and weights files the new JSON does not name are removed only after it is
in place. A reader sees the previous checkpoint or the new one, never a mixture. The JSON holds
the format version, the model's constructor arguments (nested for a :class:`~mlff.Stack`)
and free-form metadata.

A checkpoint is treated as untrusted input. The weights name must be a plain file name next to
the JSON (``save_model`` writes ``<json stem>.<12 lowercase hex digits>.safetensors`` and
removes only files of that pattern), so a checkpoint never reads or removes a file outside its
own directory. The config is checked against the bounds
below before any model is built, the weights' header against the shapes the config implies
before any tensor is read, and the loaded tensors as the constructors check their arguments.
Every refusal is a ValueError (FileNotFoundError for missing files) that names the field or
tensor.

A checkpoint may carry a :class:`~mlff.uncertainty.Committee` (``save_model(...,
committee=)``): its (K, P) members go to a second content-addressed file,
``<json stem>.committee.<12 lowercase hex digits>.safetensors`` holding one tensor
``thetas``, and the JSON gains ``"committee": {"weights": <that name>, "size": K, "scale":
<eV>}``. The model's weights file is the same with or without a committee, and a loader that
does not know the key (an older mlff) reads the model and ignores it, so the format version
stays 1. :func:`load_committee` reads it back under the same rules: the name as for the
weights, the size and scale bounded, the header's shape checked against (size, the model's P)
before any data is read, the values finite.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from ase.data import atomic_numbers
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mlff.models import ACEModel, OneBody, PairModel
from mlff.models.ace_basis import basis_size_bound, enumeration_size
from mlff.models.radial import check_r0
from mlff.protocol import LinearSiteModel, SiteModel
from mlff.stack import Stack
from mlff.uncertainty import MAX_COMMITTEE_SIZE, Committee

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "load_checkpoint",
    "load_committee",
    "load_model",
    "model_config",
    "model_from_config",
    "resolve_checkpoint",
    "save_model",
    "validate_config",
]

FORMAT_VERSION = 1

#: Largest cutoff of a pair or ACE part, Å: neighbour counts grow as cutoff³, and no
#: short-range site model needs more.
MAX_CUTOFF = 20.0
#: Radial functions per pair or per ACE channel: far beyond any fitted model; each one adds
#: columns to every block.
MAX_N_MAX = 64
#: Largest ACE angular degree: the closed-form harmonic gradients pass their 1e-9 check up to
#: l = 9 and fail it at l = 10; 8 leaves a margin.
MAX_L_MAX = 8
#: Elements of one model: each element there is, once.
MAX_ELEMENTS = 118
#: ACE correlation orders the basis can couple (:mod:`mlff.models.ace_basis`).
ACE_ORDERS = (1, 2, 3, 4)
#: Factor multisets the ACE basis enumeration may walk, 1-3 µs each here: under half a minute, which
#: is what building such a model costs anyway (two elements at order 4 and degree 18 walk 9.4e6).
MAX_ACE_ENUMERATION = 10**7
#: Bound (:func:`~mlff.models.ace_basis.basis_size_bound`) on ACE functions per element:
#: a fit with more columns is far beyond any training set; 5 elements at the defaults give 50,675.
MAX_ACE_BASIS = 200_000
#: Stacks inside stacks, and parts per stack: a student is one stack of a few parts.
MAX_STACK_DEPTH = 3
MAX_STACK_PARTS = 16
#: Largest checkpoint JSON, bytes: config and metadata take kilobytes (r0 of 118 elements ~300 kB).
MAX_JSON_BYTES = 16 * 2**20
#: Weights dtypes a checkpoint may hold (save_model writes F64).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")

_KEYS = {
    "Stack": ("type", "parts"),
    "OneBody": ("type", "e0"),
    "PairModel": ("type", "elements", "cutoff", "n_max", "repulsion", "r0"),
    "ACEModel": ("type", "elements", "cutoff", "n_max", "l_max", "w_l", "max_degree", "r0"),
}
#: Keys a config may lack (checkpoints written before them): the radial inner switch.
_OPTIONAL_KEYS = {"PairModel": ("inner",), "ACEModel": ("inner",)}
#: Keys of the JSON's optional "committee" object, and the one tensor its file holds.
_COMMITTEE_KEYS = ("weights", "size", "scale")
COMMITTEE_TENSOR = "thetas"
#: The random part ``tempfile.mkstemp`` appends to ``atomic_write``'s prefix.
_TEMPORARY_TAIL = r"\.[a-z0-9_]{8}"


def model_config(model: SiteModel) -> dict[str, Any]:
    """The constructor arguments of ``model`` as JSON-ready data."""
    if isinstance(model, Stack):
        return {"type": "Stack", "parts": [model_config(p) for p in model.parts]}
    if isinstance(model, OneBody):
        # A list of pairs: the element order is the order of the weights.
        return {"type": "OneBody", "e0": [[e, v] for e, v in model.reference_energies().items()]}
    if isinstance(model, PairModel):
        return {
            "type": "PairModel",
            "elements": list(model.elements),
            "cutoff": model.cutoff,
            "n_max": model.n_max,
            "repulsion": model.repulsion is not None,
            "r0": model.radial.transform.r0.tolist(),
            **_inner_config(model),
        }
    if isinstance(model, ACEModel):
        return {
            "type": "ACEModel",
            "elements": list(model.elements),
            "cutoff": model.cutoff,
            "n_max": model.n_max,
            "l_max": model.l_max,
            "w_l": model.w_l,
            "max_degree": {str(k): v for k, v in model.max_degree.items()},
            "r0": model.radial.transform.r0.tolist(),
            **_inner_config(model),
        }
    raise TypeError(
        f"no checkpoint format for {type(model).__name__}; "
        "known: Stack, OneBody, PairModel, ACEModel"
    )


def _inner_config(model) -> dict[str, Any]:
    """``{"inner": [start, end]}`` for a radial basis with an inner switch, else nothing."""
    inner = model.radial.inner
    return {} if inner is None else {"inner": [inner.start, inner.end]}


# -- config validation -------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A short repr of a refused value."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(where: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{where} = {_show(value)}; accepted {accepted}")


def _real(value: Any, where: str, accepted: str = "a finite number") -> float:
    """``value`` as a finite float; bools, strings and lists are refused."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:  # an integer beyond float range
            x = math.inf
        if math.isfinite(x):
            return x
    raise _refuse(where, value, accepted)


def _integer(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and lo <= value <= hi:
        return int(value)
    raise _refuse(where, value, f"integers {lo} to {hi}")


def _cutoff(value: Any, where: str) -> float:
    accepted = f"numbers greater than 0 and at most {MAX_CUTOFF} (Å)"
    cutoff = _real(value, where, accepted)
    if not 0.0 < cutoff <= MAX_CUTOFF:
        raise _refuse(where, value, accepted)
    return cutoff


def _element(symbol: Any, where: str, earlier: list) -> None:
    """A chemical symbol not among ``earlier``."""
    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise _refuse(where, symbol, "chemical symbols such as 'Si'")
    if symbol in earlier:
        raise _refuse(where, symbol, "each element once")


def _elements(value: Any, where: str) -> list[str]:
    """A list of 1 to MAX_ELEMENTS distinct element symbols."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ELEMENTS:
        raise _refuse(where, value, f"a list of 1 to {MAX_ELEMENTS} element symbols")
    for k, symbol in enumerate(value):
        _element(symbol, f"{where}[{k}]", value[:k])
    return value


def _r0(value: Any, where: str, elements: list[str]) -> None:
    """An (n, n) nested list of numbers that :func:`check_r0` accepts."""
    n = len(elements)
    accepted = f"a symmetric {n} × {n} list of positive bond lengths in Å"
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(isinstance(row, list) and len(row) == n for row in value)
    ):
        raise _refuse(where, value, accepted)
    rows = [
        [_real(x, f"{where}[{i}][{j}]", accepted) for j, x in enumerate(row)]
        for i, row in enumerate(value)
    ]
    try:
        check_r0(torch.tensor(rows, dtype=torch.float64), elements)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _max_degree(value: Any, where: str) -> dict[int, float]:
    """Correlation order (a key "1" to "4") → finite largest degree."""
    accepted = "an object mapping correlation orders '1' to '4' to finite degrees"
    if not isinstance(value, dict) or not value:
        raise _refuse(where, value, accepted)
    out: dict[int, float] = {}
    for key, degree in value.items():
        if isinstance(key, bool) or str(key).strip() not in {str(nu) for nu in ACE_ORDERS}:
            raise _refuse(
                f"{where} key", key, f"correlation orders {ACE_ORDERS[0]} to {ACE_ORDERS[-1]}"
            )
        out[int(str(key).strip())] = _real(degree, f"{where}[{key!r}]")
    return out


def _validate_stack(config: dict, where: str, depth: int) -> None:
    if depth > MAX_STACK_DEPTH:
        raise ValueError(
            f"{where} is a Stack nested {depth} deep; accepted at most {MAX_STACK_DEPTH}"
        )
    parts = config["parts"]
    if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_STACK_PARTS:
        raise _refuse(f"{where}.parts", parts, f"a list of 1 to {MAX_STACK_PARTS} model configs")
    for k, part in enumerate(parts):
        _validate(part, f"{where}.parts[{k}]", depth + 1)


def _validate_onebody(config: dict, where: str, depth: int) -> None:
    e0 = config["e0"]
    accepted = f"a list of 1 to {MAX_ELEMENTS} [element, E0 in eV] pairs"
    if not isinstance(e0, list) or not 1 <= len(e0) <= MAX_ELEMENTS:
        raise _refuse(f"{where}.e0", e0, accepted)
    for k, pair in enumerate(e0):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _refuse(f"{where}.e0[{k}]", pair, "an [element, E0 in eV] pair")
        _element(pair[0], f"{where}.e0[{k}][0]", [p[0] for p in e0[:k]])
        _real(pair[1], f"{where}.e0[{k}][1]", "a finite energy in eV")


def _validate_radial(config: dict, where: str) -> list[str]:
    """The fields pair and ACE parts share; returns the elements."""
    elements = _elements(config["elements"], f"{where}.elements")
    _cutoff(config["cutoff"], f"{where}.cutoff")
    _integer(config["n_max"], f"{where}.n_max", 1, MAX_N_MAX)
    _r0(config["r0"], f"{where}.r0", elements)
    if "inner" in config:
        inner = config["inner"]
        accepted = "[start, end] with 0 <= start < end <= 2 (fractions of r0)"
        if not isinstance(inner, list) or len(inner) != 2:
            raise _refuse(f"{where}.inner", inner, accepted)
        start, end = (_real(x, f"{where}.inner", accepted) for x in inner)
        if not 0.0 <= start < end <= 2.0:
            raise _refuse(f"{where}.inner", inner, accepted)
    return elements


def _validate_pair(config: dict, where: str, depth: int) -> None:
    _validate_radial(config, where)
    if not isinstance(config["repulsion"], bool):
        raise _refuse(f"{where}.repulsion", config["repulsion"], "true or false")


def _validate_ace(config: dict, where: str, depth: int) -> None:
    elements = _validate_radial(config, where)
    l_max = _integer(config["l_max"], f"{where}.l_max", 0, MAX_L_MAX)
    w_l = _real(config["w_l"], f"{where}.w_l", "a finite number >= 0")
    if w_l < 0:
        raise _refuse(f"{where}.w_l", config["w_l"], "a finite number >= 0")
    degrees = _max_degree(config["max_degree"], f"{where}.max_degree")
    size = (len(elements), config["n_max"], l_max, degrees, w_l)
    walked = enumeration_size(*size)
    if walked > MAX_ACE_ENUMERATION:
        raise ValueError(
            f"{where}: {len(elements)} elements, n_max={config['n_max']}, l_max={l_max}, "
            f"max_degree={degrees} would enumerate {walked:.3g} factor multisets; "
            f"accepted at most {MAX_ACE_ENUMERATION:.0e} "
            "(lower n_max, l_max, max_degree or the number of elements)"
        )
    bound = basis_size_bound(*size)
    if bound == 0:
        raise _refuse(
            f"{where}.max_degree", config["max_degree"], "degrees that admit a basis function"
        )
    if bound > MAX_ACE_BASIS:
        raise ValueError(
            f"{where}: n_max={config['n_max']}, l_max={l_max}, max_degree={degrees} "
            f"allow up to {bound} "
            f"basis functions per element; accepted at most {MAX_ACE_BASIS}"
        )


_VALIDATORS = {
    "Stack": _validate_stack,
    "OneBody": _validate_onebody,
    "PairModel": _validate_pair,
    "ACEModel": _validate_ace,
}


def _validate(config: Any, where: str, depth: int) -> None:
    if not isinstance(config, dict):
        raise _refuse(where, config, "a JSON object with a 'type'")
    kind = config.get("type")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise _refuse(f"{where}.type", kind, f"one of {', '.join(_KEYS)}")
    missing = [k for k in _KEYS[kind] if k not in config]
    known = _KEYS[kind] + _OPTIONAL_KEYS.get(kind, ())
    unknown = [k for k in config if k not in known]
    if missing or unknown:
        problem = f"lacks {missing}" if missing else f"has unknown keys {unknown[:5]}"
        raise ValueError(f"{where} ({kind}) {problem}; accepted keys: {', '.join(known)}")
    _VALIDATORS[kind](config, where, depth)


def validate_config(config: Any, where: str = "model") -> None:
    """Refuse a model config (:func:`model_config` data) unless its types and sizes are within
    the module's bounds, in milliseconds and before anything is built. The ValueError names
    the field by its JSON path from ``where``, e.g. ``model.parts[2].l_max``."""
    _validate(config, where, depth=1)


def _construct(config: dict[str, Any], parts: list[SiteModel]) -> SiteModel:
    """The model of a validated config (``parts`` built already for a Stack)."""
    kind = config["type"]
    if kind == "Stack":
        return Stack(parts)
    if kind == "OneBody":
        return OneBody({e: float(v) for e, v in config["e0"]})
    r0 = torch.tensor(config["r0"], dtype=torch.float64)
    if kind == "PairModel":
        return PairModel(
            config["elements"],
            cutoff=config["cutoff"],
            n_max=config["n_max"],
            repulsion=config["repulsion"],
            r0=r0,
            inner=config.get("inner"),
        )
    return ACEModel(
        config["elements"],
        cutoff=config["cutoff"],
        n_max=config["n_max"],
        l_max=config["l_max"],
        w_l=config["w_l"],
        max_degree=config["max_degree"],
        r0=r0,
        inner=config.get("inner"),
    )


def _build(config: dict[str, Any], where: str) -> SiteModel:
    """The model of a validated config; a constructor's refusal is named by ``where``."""
    parts = (
        [_build(p, f"{where}.parts[{k}]") for k, p in enumerate(config["parts"])]
        if config["type"] == "Stack"
        else []
    )
    try:
        return _construct(config, parts)
    except ValueError as err:
        raise ValueError(f"{where} ({config['type']}): {err}") from None


def model_from_config(config: Any, where: str = "model") -> SiteModel:
    """Build a model (weights unset) from :func:`model_config` data, checked by
    :func:`validate_config` first."""
    validate_config(config, where)
    return _build(config, where)


def _expected_shapes(
    config: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[tuple[int, int], ...]]:
    """State-dict key → (smallest, largest) of each dimension, for a validated config. The
    ACE readout's width is known only once its basis is enumerated; its bound stands in."""
    kind = config["type"]
    if kind == "Stack":
        shapes: dict[str, tuple[tuple[int, int], ...]] = {}
        for k, part in enumerate(config["parts"]):
            shapes.update(_expected_shapes(part, f"{prefix}parts.{k}."))
        return shapes
    if kind == "OneBody":
        n = len(config["e0"])
        return {f"{prefix}e0": ((n, n),)}
    n = len(config["elements"])
    square = ((n, n), (n, n))
    shapes = {f"{prefix}radial.transform.r0": square}
    if kind == "PairModel":
        n_pairs, n_max = n * (n + 1) // 2, config["n_max"]
        shapes[f"{prefix}readout.weight"] = ((n_pairs, n_pairs), (n_max, n_max))
        if config["repulsion"]:
            shapes.update(
                {
                    f"{prefix}repulsion.z": ((n, n),),
                    f"{prefix}repulsion.r_inner": square,
                    f"{prefix}repulsion.r_outer": square,
                }
            )
        return shapes
    degrees = _max_degree(config["max_degree"], "max_degree")
    width = basis_size_bound(n, config["n_max"], config["l_max"], degrees, float(config["w_l"]))
    shapes[f"{prefix}readout.weight"] = ((n, n), (1, width))
    return shapes


# -- files -------------------------------------------------------------------------------------


def _weights_pattern(stem: str) -> re.Pattern[str]:
    """The only weights names a checkpoint ``<stem>.json`` may have (matched in full)."""
    return re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{12}}\.safetensors")


def _committee_pattern(stem: str) -> re.Pattern[str]:
    """The only committee file names a checkpoint ``<stem>.json`` may have (matched in full)."""
    return re.compile(rf"{re.escape(stem)}\.committee\.[0-9a-f]{{12}}\.safetensors")


def atomic_write(path: Path, write) -> None:
    """Make ``path`` by ``write(tmp)`` on a temporary file beside it, synced and renamed into
    place: readers see the old file or the whole new one, never part of it."""
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


def _remove_leftovers(json_path: Path, keep: set[str]) -> None:
    """Remove what interrupted saves of this checkpoint left: its temporary files and its
    weights and committee files other than those in ``keep``. Only regular files whose names
    match this checkpoint's own patterns exactly, so nothing else in the directory is
    touched."""
    weights = _weights_pattern(json_path.stem)
    committee = _committee_pattern(json_path.stem)
    temporary = re.compile(
        rf"\.(?:{re.escape(json_path.name)}|{weights.pattern}|{committee.pattern})"
        rf"{_TEMPORARY_TAIL}"
    )
    with os.scandir(json_path.parent) as entries:
        for entry in entries:
            if entry.name in keep or not entry.is_file(follow_symlinks=False):
                continue
            if (
                weights.fullmatch(entry.name)
                or committee.fullmatch(entry.name)
                or temporary.fullmatch(entry.name)
            ):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """12 hex digits of the SHA-256 of the tensors' names and bytes."""
    return hashlib.sha256(
        b"".join(k.encode() + v.numpy().tobytes() for k, v in sorted(tensors.items()))
    ).hexdigest()[:12]


def save_model(
    model: SiteModel,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    committee: Committee | None = None,
) -> Path:
    """Write ``<path>.<hash>.safetensors`` and ``<path>.json``; returns the JSON path.

    A model that :func:`load_model` would refuse is refused first (ValueError), before the disk
    is touched. Once the new JSON is in place, this checkpoint's own temporary files and the
    weights files it no longer names are removed (what a killed save leaves). One writer per
    checkpoint at a time.

    ``committee``: a :class:`~mlff.uncertainty.Committee` of this model (P members' length),
    written to ``<path>.committee.<hash>.safetensors`` before the weights, and named in the
    JSON; :func:`load_committee` reads it back. Saving without one drops any earlier one.
    """
    json_path = _json_path(Path(path))
    config = model_config(model)
    if committee is not None and not isinstance(committee, Committee):
        raise TypeError(
            f"committee must be a mlff.uncertainty.Committee or None, "
            f"got {type(committee).__name__}; build one with Committee.from_fit(result, train)"
        )
    try:
        validate_config(config)
        model.check_parameters()
        if committee is not None:
            committee.check_model(model)
    except ValueError as err:
        raise ValueError(
            f"refusing to save a checkpoint that load_model would refuse: {err}"
        ) from None
    weights = {
        k: v.detach().to("cpu", torch.float64).contiguous() for k, v in model.state_dict().items()
    }
    weights_name = f"{json_path.stem}.{_digest(weights)}.safetensors"
    document = {
        "format": "mlff-checkpoint",
        "format_version": FORMAT_VERSION,
        "model": config,
        "weights": weights_name,
        "metadata": metadata or {},
    }
    keep = {weights_name}
    members = None
    if committee is not None:
        members = {COMMITTEE_TENSOR: torch.from_numpy(committee.thetas.copy())}  # (K, P)
        committee_name = f"{json_path.stem}.committee.{_digest(members)}.safetensors"
        document["committee"] = {
            "weights": committee_name,
            "size": committee.size,
            "scale": committee.scale,
        }
        keep.add(committee_name)
    text = json.dumps(document, indent=2, sort_keys=True)
    json.loads(text)  # refuse metadata that does not round-trip before touching the disk
    # Weights (and the committee) under content-addressed names first, the JSON that points at
    # them last: a crash in between leaves the previous checkpoint whole.
    if members is not None:
        atomic_write(json_path.parent / committee_name, lambda tmp: save_file(members, tmp))
    atomic_write(json_path.parent / weights_name, lambda tmp: save_file(weights, tmp))
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(text))
    _remove_leftovers(json_path, keep=keep)
    return json_path


def _json_path(path: Path) -> Path:
    """``run/student`` → ``run/student.json``; a ``.json`` or ``.safetensors`` ending is replaced,
    any other dot is part of the name (``run/model.v2`` → ``run/model.v2.json``)."""
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint JSON for ``path``: a ``.json`` file, a run directory (``student.json``
    inside) or a path without suffix."""
    p = Path(path)
    if p.is_dir():
        p = p / "student.json"
    else:
        p = _json_path(p)
    if not p.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {p}; expected a run directory with student.json or a .json file"
        )
    return p


def _read_document(json_path: Path) -> dict[str, Any]:
    """The checkpoint's JSON object, its top-level fields checked (not the model config)."""
    size = json_path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(
            f"{json_path} is {size} bytes; a checkpoint JSON has at most {MAX_JSON_BYTES}"
        )
    try:
        document = json.loads(json_path.read_bytes())
    except (
        ValueError,
        RecursionError,
    ) as err:  # JSONDecodeError, bad UTF-8, digit limits, deep nesting
        raise ValueError(f"{json_path} is not valid JSON: {err}") from None
    found = (
        document.get("format")
        if isinstance(document, dict)
        else f"a JSON {type(document).__name__}"
    )
    if found != "mlff-checkpoint":
        raise ValueError(
            f"{json_path} is not an mlff checkpoint (format={_show(found)}); "
            "expected an object with format 'mlff-checkpoint'"
        )
    _integer(document.get("format_version"), f"{json_path}: format_version", 1, FORMAT_VERSION)
    if "model" not in document:
        raise ValueError(f"{json_path} lacks the 'model' config")
    if not isinstance(document.get("metadata", {}), dict):
        raise _refuse(f"{json_path}: metadata", document["metadata"], "a JSON object")
    return document


def _weights_path(
    json_path: Path, name: Any, field: str = "weights", written: str | None = None
) -> Path:
    """The weights file a checkpoint names: a plain file name next to the JSON (no directory
    part, not hidden, ending in ``.safetensors``), not a link out of the directory.

    Names from before the content-addressed ones (``student.safetensors``) still load; only
    names in :func:`_weights_pattern` (and :func:`_committee_pattern`) are ever removed by
    :func:`save_model`. ``field`` and ``written`` (the name save_model writes) word the errors.
    """
    written = written or f"{json_path.stem}.<12 lowercase hex digits>.safetensors"
    plain = (
        isinstance(name, str)
        and name == Path(name).name
        and "\\" not in name
        and not name.startswith(".")
    )
    if not (plain and name.endswith(".safetensors")):
        raise ValueError(
            f"{json_path}: {field} = {_show(name)}; "
            "accepted a plain file name next to the JSON ending in "
            f"'.safetensors', as save_model writes it: '{written}'"
        )
    path = json_path.parent / name
    try:
        target = Path(os.path.realpath(path))
        if target.parent != Path(os.path.realpath(json_path.parent)):
            raise ValueError(
                f"{json_path}: {field} {name} is a link to {target}, "
                "outside the checkpoint's directory"
            )
        if not path.exists():
            raise FileNotFoundError(
                f"checkpoint {json_path} names {field} {path}, which do not exist"
            )
        if not path.is_file():
            raise ValueError(f"{json_path}: {field} {path} is not a regular file")
    except OSError as err:  # a name too long for the file system, a loop of links, no permission
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"{json_path}: {field} {_show(name)} cannot be opened: {err.strerror}"
        ) from None
    return path


def _few(names: list[str]) -> str:
    """Up to five names, and how many more."""
    return repr(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _check_header(weights_path: Path, expected: dict[str, tuple[tuple[int, int], ...]]) -> None:
    """Tensor names, dtypes and shapes from the safetensors header (no data read) against
    ``expected`` (see :func:`_expected_shapes`)."""
    try:
        with safe_open(str(weights_path), "pt") as handle:
            names = handle.keys()
            header = {
                k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype())
                for k in names
            }
    except (SafetensorError, OSError) as err:
        raise ValueError(f"not a safetensors file: {err}") from None
    missing = [k for k in expected if k not in header]
    unexpected = [k for k in header if k not in expected]
    if missing or unexpected:
        found = [
            f"{what} tensors {_few(keys)}"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise ValueError(f"{' and '.join(found)}; the config implies {_few(list(expected))}")
    for key, (shape, dtype) in header.items():
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"tensor {key!r} is {dtype}; accepted {', '.join(FLOAT_DTYPES)}")
        bounds = expected[key]
        if len(shape) != len(bounds) or not all(
            lo <= d <= hi for d, (lo, hi) in zip(shape, bounds, strict=True)
        ):
            implied = ", ".join(str(lo) if lo == hi else f"{lo} to {hi}" for lo, hi in bounds)
            raise ValueError(f"tensor {key!r} has shape {shape}; the config implies ({implied})")


def _load_model(json_path: Path, document: dict[str, Any]) -> SiteModel:
    """The model of a checkpoint document (:func:`_read_document`), checked throughout."""
    weights_path = _weights_path(json_path, document.get("weights"))
    config = document["model"]
    try:
        validate_config(config)
    except ValueError as err:
        raise ValueError(f"checkpoint {json_path}: {err}") from None
    try:
        _check_header(weights_path, _expected_shapes(config))
    except ValueError as err:
        raise ValueError(
            f"weights {weights_path} do not fit the model in {json_path}: {err}"
        ) from None
    try:
        model = _build(config, "model")
    except ValueError as err:
        raise ValueError(f"checkpoint {json_path}: {err}") from None
    try:
        model.load_state_dict(load_file(str(weights_path)), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:  # safetensors and torch raise their own
        raise ValueError(
            f"weights {weights_path} do not fit the model in {json_path}: {err}"
        ) from None
    try:
        model.check_parameters()
    except ValueError as err:
        raise ValueError(f"checkpoint {json_path}: weights {weights_path.name}: {err}") from None
    return model.eval()


def _load_committee(
    json_path: Path, document: dict[str, Any], model: SiteModel
) -> Committee | None:
    """The committee a checkpoint document names, or None; checked against ``model``."""
    entry = document.get("committee")
    if entry is None:
        return None
    where = f"{json_path}: committee"
    if not isinstance(entry, dict):
        raise _refuse(where, entry, f"a JSON object with keys {', '.join(_COMMITTEE_KEYS)}")
    missing = [k for k in _COMMITTEE_KEYS if k not in entry]
    unknown = [k for k in entry if k not in _COMMITTEE_KEYS]
    if missing or unknown:
        problem = f"lacks {missing}" if missing else f"has unknown keys {unknown[:5]}"
        raise ValueError(f"{where} {problem}; accepted keys: {', '.join(_COMMITTEE_KEYS)}")
    size = _integer(entry["size"], f"{where}.size", 2, MAX_COMMITTEE_SIZE)
    accepted = "a finite number > 0 (eV)"
    scale = _real(entry["scale"], f"{where}.scale", accepted)
    if scale <= 0:
        raise _refuse(f"{where}.scale", entry["scale"], accepted)
    path = _weights_path(
        json_path,
        entry["weights"],
        field="committee.weights",
        written=f"{json_path.stem}.committee.<12 lowercase hex digits>.safetensors",
    )
    if not isinstance(model, LinearSiteModel):
        raise ValueError(f"{where}: the model is not linear, so it cannot have a committee")
    n_parameters = model.length_basis()
    try:
        _check_header(path, {COMMITTEE_TENSOR: ((size, size), (n_parameters, n_parameters))})
    except ValueError as err:
        raise ValueError(
            f"committee {path} does not fit the model in {json_path} "
            f"(size {size}, P = {n_parameters}): {err}"
        ) from None
    try:
        thetas = load_file(str(path))[COMMITTEE_TENSOR]
    except (SafetensorError, OSError) as err:
        raise ValueError(f"committee {path} cannot be read: {err}") from None
    try:
        return Committee(thetas.to(torch.float64).numpy(), scale)
    except ValueError as err:
        raise ValueError(f"{where} ({path.name}): {err}") from None


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[SiteModel, dict[str, Any], Committee | None]:
    """(model in eval mode, metadata, committee or None) from one reading of a checkpoint.

    The model is checked as by :func:`load_model`, the committee as by :func:`load_committee`;
    both come from the same JSON, so they belong together even while a writer replaces the
    checkpoint.
    """
    json_path = resolve_checkpoint(path)
    document = _read_document(json_path)
    model = _load_model(json_path, document)
    return model, document.get("metadata", {}), _load_committee(json_path, document, model)


def load_committee(path: str | os.PathLike) -> Committee | None:
    """The :class:`~mlff.uncertainty.Committee` saved with a checkpoint, or None if it has none.

    The model is built (and checked) to learn its P: the committee file's header must be
    (size, P) before any of it is read; a malformed entry, size or scale is a ValueError naming
    the field.
    """
    return load_checkpoint(path)[2]


def load_model(path: str | os.PathLike) -> tuple[SiteModel, dict[str, Any]]:
    """(model in eval mode, metadata) from a checkpoint written by :func:`save_model`.

    Refuses (ValueError naming the field or tensor) a malformed document, a weights name
    outside the pattern, a config beyond the module's bounds, weights whose header does not
    fit the config, and tensors the model's constructor would not accept (NaN, inf, bad r0).
    A committee saved with the checkpoint is not read (see :func:`load_checkpoint`).
    """
    json_path = resolve_checkpoint(path)
    document = _read_document(json_path)
    return _load_model(json_path, document), document.get("metadata", {})
