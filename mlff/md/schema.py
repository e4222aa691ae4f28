"""The benchmark JSON schema (a JSON Schema subset) and a small checker for it.

``check_schema(data)`` raises ``ValueError`` naming the first path that does not match. The
checker understands ``type``, ``required``, ``properties``, ``additionalProperties``, ``items``,
``enum``, ``const`` and ``minimum``, which is all :data:`BENCHMARK_SCHEMA` uses, so the file can
also be checked with any JSON Schema validator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "BENCHMARK_SCHEMA", "check_schema", "finite_or_none"]

SCHEMA_NAME = "mlff.md.benchmark"
SCHEMA_VERSION = 1

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_INT = {"type": "integer", "minimum": 0}


def _obj(properties: dict, required: tuple | None = None, extra=False) -> dict:
    return {
        "type": "object",
        "required": list(required if required is not None else properties),
        "properties": properties,
        "additionalProperties": extra,
    }


def _nullable(schema: dict) -> dict:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": types + ["null"]}


_SUMMARY = _obj({k: _NUM for k in ("mean", "std", "min", "max")})
_LATENCY = _obj({k: _NUM for k in ("mean", "std", "min", "p50", "p95", "p99", "max")})
_MEMORY = _obj(
    {
        k: _NUM_OR_NULL
        for k in (
            "rss_initial_MB",
            "rss_peak_MB",
            "rss_final_MB",
            "rss_growth_MB_per_1000_steps",
            "cuda_allocated_initial_MB",
            "cuda_allocated_peak_MB",
            "cuda_allocated_final_MB",
            "cuda_growth_MB_per_1000_steps",
        )
    }
)
_ENERGY = _obj(
    {
        "quantity": {"type": "string"},
        "drift_meV_atom_ps": _NUM,
        "drift_stderr_meV_atom_ps": _NUM,
        "fluctuation_meV_atom": _NUM,
        "span_meV_atom": _NUM,
        "duration_ps": _NUM,
        "n_samples": _INT,
    }
)
_NUM_LIST = {"type": "array", "items": _NUM_OR_NULL}
_SERIES = _obj(
    {
        "time_ps": _NUM_LIST,
        "energy_total_eV_per_atom": _NUM_LIST,
        "energy_conserved_eV_per_atom": {"type": ["array", "null"], "items": _NUM_OR_NULL},
        "temperature_K": _NUM_LIST,
        "volume_A3_per_atom": _NUM_LIST,
        "pressure_time_ps": _NUM_LIST,
        "pressure_GPa": _NUM_LIST,
        "latency_s": _NUM_LIST,
    }
)
_RUN = _obj(
    {
        "steps": _INT,
        "steps_requested": _INT,
        "warmup_steps": _INT,
        "stopped": {"type": ["string", "null"]},
        "first_call_s": _NUM_OR_NULL,
        "wall_s": _NUM,
        "md_time_s": _NUM,
        "steps_per_s": _NUM_OR_NULL,
        "latency_s": _nullable(_LATENCY),
        "us_per_atom_step": _NUM_OR_NULL,
        "memory": _MEMORY,
        "energy": _nullable(_ENERGY),
        "temperature_K": _nullable(_SUMMARY),
        "pressure_GPa": _nullable(_SUMMARY),
        "volume_A3_per_atom": _nullable(
            _obj({k: _NUM for k in ("mean", "std", "min", "max", "initial", "final")})
        ),
        "series": _SERIES,
    },
    required=(
        "steps",
        "steps_requested",
        "warmup_steps",
        "stopped",
        "first_call_s",
        "wall_s",
        "md_time_s",
        "steps_per_s",
        "latency_s",
        "us_per_atom_step",
        "memory",
        "energy",
        "temperature_K",
        "pressure_GPa",
        "volume_A3_per_atom",
    ),
)
_RATIO = {"type": "object", "additionalProperties": _NUM_OR_NULL}
_CASE = _obj(
    {
        "size": {"type": ["string", "integer"]},
        "n_atoms": _INT,
        "formula": {"type": "string"},
        "ensemble": {"enum": ["nve", "langevin", "bussi", "nose-hoover", "npt-iso", "npt"]},
        "kind": {"enum": ["NVE", "NVT", "NPT"]},
        "integrator": {"type": "string"},
        "runs": {"type": "object", "additionalProperties": _RUN},
        "speed_ratio": {
            "type": ["object", "null"],
            "required": ["reference", "p50", "mean"],
            "properties": {"reference": {"type": "string"}, "p50": _RATIO, "mean": _RATIO},
            "additionalProperties": False,
        },
    }
)
_STRINGS_OR_NULL = {"type": "object", "additionalProperties": {"type": ["string", "null"]}}

#: The layout of ``bench.json`` (documented field by field in ``docs/md.md``).
BENCHMARK_SCHEMA = _obj(
    {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "environment": _obj(
            {
                "packages": {
                    **_STRINGS_OR_NULL,
                    "required": ["python", "mlff", "torch", "ase", "numpy"],
                },
                "machine": {
                    "type": "object",
                    "required": ["platform", "cpu_model", "logical_cores", "torch_threads", "cuda"],
                },
                "git": {"type": ["object", "null"], "required": ["revision", "dirty"]},
            }
        ),
        "settings": {
            "type": "object",
            "required": [
                "structure",
                "sizes",
                "ensembles",
                "steps",
                "warmup",
                "timestep_fs",
                "temperature_K",
                "interleave_block",
                "seed",
            ],
        },
        "calculators": {
            "type": "object",
            "additionalProperties": {"type": "object", "required": ["reference"]},
        },
        "cases": {"type": "array", "items": _CASE},
        "process": _obj({"peak_rss_MB": _NUM_OR_NULL}),
    }
)

_TYPES = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: (
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(value, schema: Mapping, path: str) -> None:
    if "const" in schema and value != schema["const"]:
        raise ValueError(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{path}: {value!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            raise ValueError(
                f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}"
            )
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        raise ValueError(f"{path}: {value!r} is below the minimum {schema['minimum']}")
    if isinstance(value, Mapping):
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{path}.{key}")
            elif extra is False:
                raise ValueError(f"{path}: unexpected field {key!r}; expected: {', '.join(props)}")
            elif isinstance(extra, Mapping):
                _check(item, extra, f"{path}.{key}")
    elif isinstance(value, (list, tuple)) and "items" in schema:
        for k, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{k}]")


def check_schema(data, schema: Mapping = BENCHMARK_SCHEMA) -> None:
    """Raise ``ValueError`` (with the JSON path) where ``data`` does not match ``schema``."""
    _check(data, schema, "$")


def finite_or_none(value) -> float | None:
    """``float(value)``, or ``None`` for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None
