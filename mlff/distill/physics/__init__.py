"""Teacher-vs-student physics: the material properties a user judges a potential by.

Every function takes any ASE calculator and a structure, and returns a JSON-serialisable dict
(plain floats, lists, bools, strings; ``None`` where a value could not be computed). Each result
says how many calculator evaluations it took (``calls``) and how many atoms those evaluations
held in total (``atoms_evaluated``), since a teacher costs per call and per atom.

Units: lengths Å, energies eV, stress and moduli GPa, frequencies THz, temperatures K, MD
timesteps fs (inputs), times in results ps, surface energies eV/Å² and J/m², diffusion Å²/ps
and cm²/s.

Entry points::

    teacher = crystal_physics(teacher_calc, atoms, settings)       # eos elastic phonons ...
    teacher |= liquid_physics(teacher_calc, melt, 2000.0, settings)
    student = ...same with the student...
    table = compare_physics(teacher, student)
    print(format_physics_table(table))

The individual properties (:func:`equation_of_state`, :func:`elastic_constants`,
:func:`phonons`, :func:`vacancy_formation`, :func:`surface_energy`, :func:`md_survival`) are
public too. docs/physics.md describes each method, its cost and its limitations.
"""

from mlff.distill.physics.compare import DEFAULT_TOLERANCES, compare_physics, format_physics_table
from mlff.distill.physics.counting import CountingCalculator, total_calls
from mlff.distill.physics.crystal import (
    EV_A2_TO_J_M2,  # noqa: F401 (public, though not in __all__, as before the split)
    crystal_physics,
    elastic_constants,
    equation_of_state,
    surface_energy,
    vacancy_formation,
)
from mlff.distill.physics.liquid import (
    liquid_physics,
    md_survival,
    mean_squared_displacement,
    radial_distribution,
    rdf_l1,
)
from mlff.distill.physics.phonons import phonons
from mlff.distill.physics.settings import PROPERTIES, PhysicsSettings

__all__ = [
    "PROPERTIES",
    "DEFAULT_TOLERANCES",
    "PhysicsSettings",
    "CountingCalculator",
    "crystal_physics",
    "equation_of_state",
    "elastic_constants",
    "phonons",
    "vacancy_formation",
    "surface_energy",
    "liquid_physics",
    "md_survival",
    "radial_distribution",
    "mean_squared_displacement",
    "rdf_l1",
    "compare_physics",
    "format_physics_table",
    "total_calls",
]
