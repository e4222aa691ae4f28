"""The settings of a distillation run: the domain the user states and how the loop spends its
teacher calls. Every field can come from the ``--config`` TOML file under the same name as the
command-line option; unknown keys are refused before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DistillConfig", "check_model_settings", "parse_range"]

#: Generators a run may draw from (``mlff.distill.sampling``), by their config name.
GENERATOR_NAMES = (
    "rattle",
    "strain",
    "vacancy",
    "divacancy",
    "interstitial",
    "slab",
    "compressed",
    "cluster",
    "packing",
)


def parse_range(value: Any, name: str, unit: str) -> tuple[float, float]:
    """``"LO:HI"``, ``"X"``, ``[LO, HI]`` or a number as a (lo, hi) pair with lo <= hi."""
    accepted = f"'LO:HI' in {unit} (e.g. '300:2500'), a single number or a [LO, HI] list"
    try:
        if isinstance(value, str):
            parts = [float(p) for p in value.split(":")]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parts = [float(value)]
        elif isinstance(value, Sequence):
            parts = [float(p) for p in value]
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r}; accepted {accepted}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1] or not all(abs(p) < 1e6 for p in parts):
        raise ValueError(f"{name} = {value!r}; accepted {accepted} with LO <= HI")
    return parts[0], parts[1]


def check_model_settings(ace: Any, pair: Any, weights: Any) -> None:
    """The student's part options and the property weights, checked key by key (a typo
    inside ``ace = {...}`` is named) before any work: shared by distillation and fitting."""
    from mlff.fitting.assembly import PROPERTIES
    from mlff.models import ACEModel, PairModel
    from mlff.models.default import check_part_options

    check_part_options(ace, ACEModel, "ace")
    check_part_options(pair, PairModel, "pair")
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights = {weights!r}; accepted a table with keys {PROPERTIES}")
    unknown = sorted(set(weights) - set(PROPERTIES))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join('weights.' + k for k in unknown)}; accepted in weights: "
            f"{', '.join(PROPERTIES)}"
        )
    bad = {k: v for k, v in weights.items() if not (isinstance(v, int | float) and v >= 0)}
    if bad:
        raise ValueError(f"weights {bad}: accepted numbers >= 0")


#: Row weight factors per config_type. A run's ``config_type_weights`` is laid over these: a
#: type it names gets its value, the others keep theirs.
DEFAULT_CONFIG_TYPE_WEIGHTS: dict = {
    "cluster": 0.1,
    "packing": 0.5,
    "interstitial": 0.5,
    # An isolated dimer's energy hangs on E0, which the fit estimates from bulk rows:
    # hole rows teach the wall by their forces only (energy rows spoiled every fit).
    "hole": {"energy": 0.0, "forces": 0.3, "virial": 0.3},
    # ZBL-labelled dimers below the teacher's floor (loop.core_rows): forces only, the
    # energy of an isolated dimer again hangs on E0. Their forces are hundreds of eV/Å:
    # at weight 1 they cost EMT Cu 3x its force error, at 0.02 nothing, and Si's
    # dimer, bulk and cluster scans pass from 0.005 up (docs/distillation.md).
    "core": {"energy": 0.0, "forces": 0.02, "virial": 0.0},
}


@dataclass
class DistillConfig:
    """Settings of a distillation run.

    The domain: ``structure`` (presets or files, one or more), ``temperature`` (K, [lo, hi];
    ``None`` means 300 K to above the seeds' liquid, see
    :func:`~mlff.distill.sampling.default_temperature_range`) and ``pressure`` (GPa, [lo, hi]).
    ``budget`` counts every teacher call: training labels, the held-out validation set and the
    physics checks. Counts of generated structures are per seed; temperatures are K, times fs,
    lengths Å.
    """

    teacher: str = "sevennet-0"
    teacher_batch: int = 1
    structure: list = field(default_factory=lambda: ["Si-diamond"])
    temperature: Any = None
    pressure: Any = field(default_factory=lambda: [0.0, 5.0])
    out: str = "mlff-run"
    device: str = "cpu"
    seed: int = 0
    target_atoms: int = 64
    budget: int = 500
    initial: dict = field(
        default_factory=lambda: {
            "rattle": 16,
            "strain": 8,
            "vacancy": 6,
            "divacancy": 3,
            "interstitial": 4,
            "slab": 8,
            "compressed": 8,
            "cluster": 10,
            "packing": 12,
        }
    )
    rounds: int = 10
    per_round: int = 40
    patience: int = 3
    round_candidates: dict = field(
        default_factory=lambda: {"strain": 12, "vacancy": 4, "slab": 4, "cluster": 6}
    )
    temperature_levels: int = 4
    md_steps: int = 600
    md_interval: int = 30
    timestep: float = 2.0
    melt_quench: bool = True
    hole_rows: bool = True
    core_rows: bool = True
    max_label_force: float = 100.0
    validation: dict = field(
        default_factory=lambda: {
            "rattle": 4,
            "vacancy": 2,
            "strain": 2,
            "slab": 2,
            "compressed": 2,
        }
    )
    validation_md: dict = field(default_factory=lambda: {"600": 3, "1200": 3})
    validation_md_steps: int = 40
    liquid_steps: int = 100
    liquid_equilibration: int = 20
    liquid_interval: int = 5
    physics: bool = True
    survival_steps: int = 10000
    physics_settings: dict = field(default_factory=dict)
    cutoff: float = 5.0
    ace: dict = field(default_factory=dict)
    pair: dict = field(default_factory=lambda: {"n_max": 8, "repulsion": True})
    weights: dict = field(default_factory=lambda: {"energy": 30.0, "forces": 1.0, "virial": 10.0})
    config_type_weights: dict = field(default_factory=dict)
    committee_size: int = 16
    timing_atoms: int = 216
    timing_steps: int = 6

    def __post_init__(self):
        if isinstance(self.config_type_weights, Mapping):
            self.config_type_weights = {
                **DEFAULT_CONFIG_TYPE_WEIGHTS,
                **self.config_type_weights,
            }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DistillConfig:
        from mlff.settings import from_mapping

        return from_mapping(cls, data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def structures(self) -> list[str]:
        """The seeds as a list (one string is one seed)."""
        return [self.structure] if isinstance(self.structure, str) else list(self.structure)

    def pressure_range(self) -> tuple[float, float]:
        return parse_range(self.pressure, "pressure", "GPa")

    def validate(self) -> None:
        """Refuse any bad value, naming it and what is accepted, before any teacher call."""
        minimum = {"committee_size": 2, "rounds": 0, "liquid_equilibration": 0}
        for name in (
            "budget",
            "rounds",
            "per_round",
            "target_atoms",
            "md_steps",
            "md_interval",
            "committee_size",
            "temperature_levels",
            "liquid_steps",
            "liquid_equilibration",
            "liquid_interval",
            "patience",
            "survival_steps",
            "validation_md_steps",
            "teacher_batch",
        ):
            value = getattr(self, name)
            low = minimum.get(name, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.max_label_force, int | float) and self.max_label_force > 0):
            raise ValueError(
                f"max_label_force = {self.max_label_force!r}; accepted a force in eV/Å > 0"
            )
        if not (self.timestep > 0 and self.cutoff > 0):
            raise ValueError(
                f"timestep and cutoff must be positive, got {self.timestep} and {self.cutoff}"
            )
        seeds = self.structures
        if not seeds or not all(isinstance(s, str) and s for s in seeds):
            raise ValueError(
                f"structure = {self.structure!r}; accepted one or more preset names or file paths"
            )
        if self.temperature is not None:
            lo, _ = parse_range(self.temperature, "temperature", "K")
            if lo <= 0:
                raise ValueError(f"temperature = {self.temperature!r}; accepted LO > 0 K")
        self.pressure_range()
        for name in ("initial", "validation", "round_candidates"):
            table = getattr(self, name)
            unknown = sorted(set(table) - set(GENERATOR_NAMES))
            if unknown:
                raise ValueError(
                    f"unknown generator(s) {', '.join(unknown)} in {name}; "
                    f"known: {', '.join(GENERATOR_NAMES)}"
                )
            bad = {k: v for k, v in table.items() if not isinstance(v, int) or v < 0}
            if bad:
                raise ValueError(f"{name}: counts must be integers >= 0, got {bad}")
        for temperature, count in self.validation_md.items():
            try:
                ok = float(temperature) > 0 and isinstance(count, int) and count >= 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"validation_md[{temperature!r}] = {count!r}; accepted temperature (K) keys "
                    "> 0 and frame counts >= 0"
                )
        check_model_settings(self.ace, self.pair, self.weights)
        if not isinstance(self.config_type_weights, Mapping):
            raise ValueError(
                f"config_type_weights = {self.config_type_weights!r}; accepted a table of "
                "config_type = weight (laid over the defaults)"
            )
        for ctype, factor in self.config_type_weights.items():
            values = factor.values() if isinstance(factor, Mapping) else [factor]
            if not all(isinstance(v, int | float) and v >= 0 for v in values):
                raise ValueError(
                    f"config_type_weights[{ctype!r}] = {factor!r}; accepted a number >= 0 or a "
                    "table of them by property (energy, forces, virial)"
                )
