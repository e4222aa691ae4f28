import numpy as np
import pytest
from ase.io import write

from mlff.distill.sampling import (
    PRESETS,
    rattled,
    seed_structure,
    strained,
    supercell,
    surfaces,
    vacancies,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_periodic_cells(name):
    atoms = seed_structure(name)
    assert len(atoms) > 0 and atoms.pbc.all() and atoms.get_volume() > 0
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.2  # no overlapping atoms


def test_seed_from_file_and_unknown_name(tmp_path):
    path = tmp_path / "cell.xyz"
    write(path, seed_structure("Cu-fcc"))
    assert len(seed_structure(str(path))) == 4
    with pytest.raises(ValueError, match="presets: Si-diamond"):
        seed_structure("Unobtainium")


def test_supercell_reaches_target_size():
    big = supercell(seed_structure("Si-diamond"), 64)
    assert len(big) == 64
    assert len(supercell(seed_structure("SiO2-quartz"), 64)) >= 64


@pytest.mark.parametrize("generator", [rattled, strained, vacancies, surfaces])
def test_generators_are_reproducible_and_vary(generator):
    base = supercell(seed_structure("Si-diamond"), 64)
    first = list(generator(base, 4, seed=3))
    again = list(generator(base, 4, seed=3))
    other = list(generator(base, 4, seed=4))
    assert len(first) == 4
    for (a, ctype, meta), (b, _, meta_b) in zip(first, again, strict=True):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(
            a.cell.array, b.cell.array
        )
        assert meta == meta_b and meta["generator"] in ("rattle", "strain", "vacancy", "surface")
        assert ctype == meta["generator"]
    assert not np.array_equal(first[0][0].positions, other[0][0].positions)
    assert not np.array_equal(first[0][0].positions, first[1][0].positions)


def test_generator_specifics():
    base = supercell(seed_structure("Cu-fcc"), 32)
    vac = next(vacancies(base, 1))[0]
    assert len(vac) == len(base) - 1
    slab, _, meta = next(surfaces(base, 1, vacuum=8.0))
    axis = meta["axis"]
    assert np.linalg.norm(slab.cell[axis]) == pytest.approx(np.linalg.norm(base.cell[axis]) + 8.0)
    strain = next(strained(base, 1, max_strain=0.05))[0]
    assert abs(strain.get_volume() / base.get_volume() - 1) < 0.16
