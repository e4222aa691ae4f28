"""Teachers: the slow, accurate ASE calculators a student is distilled from.

``get_teacher("sevennet-0" | "chgnet" | "emt", device=...)`` builds a named teacher; any
``ase.calculators.calculator.BaseCalculator`` instance (MACE, Orb, FeNNol, …) is accepted as
it is. Named teachers come from pip extras whose wheels carry their weights, so nothing is
downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Iterable

from ase.calculators.calculator import BaseCalculator
from ase.data import chemical_symbols

__all__ = ["TEACHERS", "get_teacher", "teacher_name", "check_teacher_elements"]

# Elements the named teachers were trained on (EMT: ASE's parametrisation).
_EMT_ELEMENTS = ("H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
# SevenNet-0 lists its elements in ``type_map``; a teacher that says nothing is not checked here
# and fails on its own terms.
TEACHERS = {
    "emt": "ASE's EMT (built in; H C N O Al Ni Cu Pd Ag Pt Au)",
    "sevennet-0": "SevenNet-0 (pip install 'mlff[sevennet]')",
    "chgnet": "CHGNet (pip install 'mlff[chgnet]')",
}


def get_teacher(teacher: str | BaseCalculator, device: str = "cpu") -> BaseCalculator:
    """A teacher calculator by name, or ``teacher`` itself if it is already an ASE calculator."""
    if isinstance(teacher, BaseCalculator):
        return teacher
    name = str(teacher).lower()
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name in ("sevennet-0", "7net-0", "sevennet"):
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError:
            raise ImportError(
                "the SevenNet-0 teacher needs the sevenn package: pip install 'mlff[sevennet]'"
            ) from None
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetCalculator("7net-0", device=device)
    if name == "chgnet":
        try:
            from chgnet.model.dynamics import CHGNetCalculator
        except ImportError:
            raise ImportError(
                "the CHGNet teacher needs the chgnet package: pip install 'mlff[chgnet]'"
            ) from None
        return CHGNetCalculator(use_device=device)
    raise ValueError(
        f"unknown teacher {teacher!r}; named teachers: {', '.join(TEACHERS)}, "
        "or pass an ASE calculator"
    )


def teacher_name(teacher: str | BaseCalculator) -> str:
    """A stable name for the store: the preset name, or the calculator's class name."""
    if isinstance(teacher, str):
        return teacher.lower()
    return type(teacher).__name__


def _supported(teacher: BaseCalculator) -> tuple[str, ...] | None:
    """The elements a calculator knows, where it says; None if it does not say."""
    from ase.calculators.emt import EMT

    if isinstance(teacher, EMT):
        return _EMT_ELEMENTS
    if type(teacher).__name__ == "CHGNetCalculator":  # CHGNet embeds Z = 1 … 94
        return tuple(chemical_symbols[1:95])
    type_map = getattr(teacher, "type_map", None)  # SevenNet: atomic number → model index
    if isinstance(type_map, dict) and type_map:
        return tuple(chemical_symbols[int(z)] for z in sorted(type_map))
    return None


def check_teacher_elements(teacher: BaseCalculator, elements: Iterable[str]) -> None:
    """Raise ``ValueError`` naming any element the teacher cannot do (when it says which it can)."""
    supported = _supported(teacher)
    if supported is None:
        return
    missing = [e for e in elements if e not in supported]
    if missing:
        raise ValueError(
            f"teacher {type(teacher).__name__} cannot do element(s) {', '.join(missing)}; "
            f"it knows: {', '.join(supported)}"
        )
