import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.formula import Formula
from ase.io import write
from ase.neighborlist import neighbor_list

from mlff.distill.sampling import (
    MELTING_POINT_K,
    PRESETS,
    clusters,
    compressed,
    default_temperature_range,
    divacancies,
    estimate_bulk_modulus,
    interstitials,
    md_frames,
    melt,
    melt_quench,
    packings,
    rattled,
    seed_structure,
    seed_structures,
    shortest_distance,
    slabs,
    strained,
    supercell,
    surfaces,
    vacancies,
    volumetric_strain_for_pressure,
)
from mlff.distill.store import LabelStore
from mlff.fitting.labels import read_labels
from mlff.graph import build_graph

CU_NN = 3.61 / np.sqrt(2)  # fcc nearest-neighbour distance, Å


def _cu32():
    return supercell(seed_structure("Cu-fcc"), 32)


def _fcc_order(atoms, a=3.61) -> float:
    """Mean |structure factor| over the <200> and <111> reciprocal vectors of the start fcc
    lattice: about 1 for the crystal (0.7-0.9 hot), about 1/sqrt(N) for a liquid."""
    ks = np.array([(2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 1), (1, -1, 1), (1, 1, -1), (-1, 1, 1)])
    phases = np.exp(1j * atoms.positions @ (2 * np.pi / a * ks).T)  # (n_atoms, n_k)
    return float(np.mean(np.abs(phases.sum(0)) / len(atoms)))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_periodic_cells(name):
    atoms = seed_structure(name)
    assert len(atoms) > 0 and atoms.pbc.all() and atoms.get_volume() > 0
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.2  # no overlapping atoms
    assert name in MELTING_POINT_K
    formula = Formula(name.split("-")[0])
    assert atoms.symbols.formula.reduce()[0].count() == formula.reduce()[0].count()


def test_quartz_is_fourfold_silicon_and_twofold_oxygen():
    quartz = seed_structure("SiO2-quartz")
    i, j, d = neighbor_list("ijd", quartz, 1.7)
    assert len(quartz) == 9 and np.allclose(np.sort(d)[[0, -1]], [1.605, 1.614], atol=2e-3)
    coordination = np.bincount(i, minlength=len(quartz))
    assert set(coordination[quartz.symbols == "Si"]) == {4}
    assert set(coordination[quartz.symbols == "O"]) == {2}
    assert set(quartz.symbols[j[quartz.symbols[i] == "Si"]]) == {"O"}


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


# ---------------------------------------------------------------- seeds and temperatures


def test_seed_structures_names_and_validation(tmp_path):
    slab = tmp_path / "my_slab.extxyz"
    write(slab, next(slabs(_cu32(), 1))[0])
    copy = tmp_path / "other" / "my_slab.extxyz"
    copy.parent.mkdir()
    write(copy, seed_structure("Al-fcc"))
    seeds = seed_structures(["Si-diamond", str(slab), "Si-diamond", str(copy)])
    names = [name for name, _ in seeds]
    assert names == ["Si-diamond", "my_slab.extxyz", "Si-diamond-2", "my_slab.extxyz-2"]
    assert seeds[1][1].pbc.tolist().count(False) == 1  # the file's mixed pbc is kept
    assert all(atoms.calc is None for _, atoms in seeds)

    with pytest.raises(ValueError, match="'Unobtainium'"):
        seed_structures(["Si-diamond", "Unobtainium"])
    with pytest.raises(ValueError, match="at least one"):
        seed_structures([])
    broken = tmp_path / "broken.cif"
    broken.write_text("this is not a CIF file\n")
    with pytest.raises(ValueError, match="broken.cif"):
        seed_structures([str(broken)])
    overlapping = bulk("Cu", "fcc", a=3.61, cubic=True)
    overlapping.positions[1] = overlapping.positions[0] + (0.1, 0.0, 0.0)
    bad = tmp_path / "overlap.extxyz"
    write(bad, overlapping)
    with pytest.raises(ValueError, match=r"overlap.extxyz.*0\.100 Å apart"):
        seed_structures([str(bad)])


def test_default_temperature_range():
    low, top = default_temperature_range(["Si-diamond"])
    assert low == 300.0 and top == pytest.approx(1.5 * 1687, abs=10) and 2400 < top < 2600
    # the highest melting point of several seeds sets the top; (name, atoms) pairs work too
    seeds = seed_structures(["Al-fcc", "Cu-fcc", "Al-fcc"])  # a repeat is named Al-fcc-2
    assert default_temperature_range(seeds)[1] == pytest.approx(1.5 * 1358, abs=10)
    with pytest.raises(ValueError, match="--temperature LO:HI"):
        default_temperature_range(["Si-diamond", "my_slab.cif"])


# ---------------------------------------------------------------- generators


GENERATORS = [rattled, strained, vacancies, surfaces, divacancies, interstitials, compressed]
GENERATORS += [clusters, packings]


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
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
        assert np.array_equal(a.pbc, b.pbc) and np.array_equal(a.numbers, b.numbers)
        assert meta == meta_b and meta["seed"] == 3 and meta["index"] in range(4)
        assert ctype == meta["generator"]
        assert shortest_distance(a) > 0.9  # nothing a teacher would choke on
    assert not np.array_equal(first[0][0].positions, other[0][0].positions)
    assert not np.array_equal(first[0][0].positions, first[1][0].positions)


def test_generator_specifics():
    base = _cu32()
    vac = next(vacancies(base, 1))[0]
    assert len(vac) == len(base) - 1
    strain = next(strained(base, 1, max_strain=0.05))[0]
    assert abs(strain.get_volume() / base.get_volume() - 1) < 0.16
    assert surfaces is slabs  # the former name, now with open boundaries


def test_interstitials_land_in_voids():
    base = _cu32()
    for atoms, _, meta in interstitials(base, 6, seed=1, rattle=0.0):
        assert len(atoms) == len(base) + 1 and meta["species"] == "Cu"
        d = atoms.get_distances(len(base), range(len(base)), mic=True)
        # fcc voids: tetrahedral a*sqrt(3)/4 = 1.56 Å, octahedral a/2 = 1.805 Å
        assert d.min() == pytest.approx(meta["clearance"]) and 1.6 < d.min() <= 1.806
    for atoms, _, _ in interstitials(base, 4, seed=2):  # rattled
        assert atoms.get_distances(len(base), range(len(base)), mic=True).min() > 1.3
    quartz = seed_structure("SiO2-quartz")
    drawn = {meta["species"] for _, _, meta in interstitials(quartz, 12, seed=0)}
    assert drawn == {"Si", "O"}


def test_divacancies_remove_a_nearest_neighbour_pair():
    base = _cu32()
    for atoms, _, meta in divacancies(base, 5, seed=0, rattle=0.0):
        i, j = meta["sites"]
        assert len(atoms) == len(base) - 2 and i != j
        assert base.get_distance(i, j, mic=True) == pytest.approx(CU_NN, abs=1e-6)
        assert meta["distance"] == pytest.approx(CU_NN, abs=1e-6)
        kept = np.delete(base.positions, [i, j], axis=0)
        np.testing.assert_allclose(atoms.positions, kept)
    with pytest.raises(ValueError, match="at least 3 atoms, got 2"):
        next(divacancies(bulk("Si", "diamond", a=5.43), 1))


def test_slabs_are_open_along_the_normal_and_store_no_stress(tmp_path):
    base = _cu32()
    made = list(slabs(base, 3, seed=0, vacuum=8.0))
    for atoms, ctype, meta in made:
        axis = meta["axis"]
        assert ctype == "slab" and not atoms.pbc[axis] and atoms.pbc.sum() == 2
        normal = np.cross(atoms.cell[axis - 2], atoms.cell[axis - 1])
        normal /= np.linalg.norm(normal)
        height = atoms.positions @ normal
        gap = abs(atoms.cell[axis] @ normal) - np.ptp(height)
        assert gap > 8.0 - 0.5  # the vacuum, less the rattle
        graph = build_graph(atoms, 5.0)
        assert not graph.is_3d_periodic and graph.n_edges > 0
    store = LabelStore(tmp_path / "labels.db", teacher="emt")
    bulk_cell = next(rattled(base, 1))
    assert store.label(made + [bulk_cell], EMT()) == 4
    stored = {a.info["config_type"]: a for a in store.configurations()}
    slab = stored["slab"]
    assert not slab.pbc.all()
    assert "stress" not in slab.calc.results and read_labels(slab, 0).stress is None
    assert "forces" in slab.calc.results
    assert read_labels(stored["rattle"], 1).stress is not None
    with pytest.raises(ValueError, match="3D-periodic"):
        next(slabs(slab, 1))


def test_compressed_volumes_span_the_requested_range():
    base = _cu32()
    made = list(compressed(base, 20, seed=0, max_compression=0.08, max_tension=0.04, shear=0.03))
    ratios = np.array([a.get_volume() / base.get_volume() for a, _, _ in made])
    np.testing.assert_allclose(ratios, [m["volume_ratio"] for _, _, m in made], rtol=1e-10)
    low, high = 0.92**3, 1.04**3
    assert low - 1e-12 <= ratios.min() and ratios.max() <= high + 1e-12
    bin_width = (high - low) / 20 * 1.2  # stratified: one strain in each of 20 bins
    assert ratios.min() < low + bin_width and ratios.max() > high - bin_width
    sheared = [np.abs(np.array(m["shear"])).max() for _, _, m in made]
    assert 0 < max(sheared) <= 0.03


def test_strain_for_pressure_inverts_birch_murnaghan():
    b0 = 98.0
    assert volumetric_strain_for_pressure(0.0, b0) == 0.0
    small = volumetric_strain_for_pressure(0.1, b0)
    assert small == pytest.approx(-0.1 / (3 * b0), rel=1e-2)
    for p, b0p in ((5.0, 4.0), (50.0, 4.5), (-3.0, 4.0)):
        s = volumetric_strain_for_pressure(p, b0, b0p)
        x = (1 + s) ** 3
        eta = x ** (-2 / 3)
        back = 1.5 * b0 * (eta**3.5 - eta**2.5) * (1 + 0.75 * (b0p - 4) * (eta - 1))
        assert back == pytest.approx(p, rel=1e-8) and np.sign(s) == -np.sign(p)
    with pytest.raises(ValueError, match="largest tension"):
        volumetric_strain_for_pressure(-50.0, b0)
    with pytest.raises(ValueError, match="bulk_modulus_gpa"):
        volumetric_strain_for_pressure(1.0, -1.0)
    assert 110 < estimate_bulk_modulus(_cu32(), EMT()) < 160  # EMT Cu: about 134 GPa


def test_clusters_are_non_periodic_and_squeezed():
    base = _cu32()
    for atoms, _, meta in clusters(base, 4, seed=0, size=20, squeeze=(0.7, 0.7), rattle=0.0):
        assert len(atoms) == 20 and not atoms.pbc.any() and meta["squeeze"] == 0.7
        assert shortest_distance(atoms) == pytest.approx(0.7 * CU_NN, abs=1e-6)
        # compact: every atom has neighbours at the squeezed first-shell distance
        d = atoms.get_all_distances()
        np.fill_diagonal(d, np.inf)
        assert (d.min(1) < 0.7 * CU_NN + 1e-6).all()
        assert (atoms.positions.min(0) > 5.9).all()  # vacuum on every side
    squeezes = [m["squeeze"] for _, _, m in clusters(base, 10, seed=1)]
    assert min(squeezes) < 0.85 and all(0.7 <= s <= 1.0 for s in squeezes)


def test_packings_fill_the_cell_at_random_keeping_contacts():
    base = _cu32()
    for atoms, _, meta in packings(base, 3, seed=0):
        assert np.array_equal(atoms.cell.array, base.cell.array) and atoms.pbc.all()
        assert sorted(atoms.numbers) == sorted(base.numbers)
        assert shortest_distance(atoms) == pytest.approx(meta["closest_ratio"] * 0.75 * CU_NN)
        assert meta["closest_ratio"] > 0.85
        assert _fcc_order(atoms) < 0.4  # no lattice left
    quartz = supercell(seed_structure("SiO2-quartz"), 18)  # oblique cell, two species
    atoms, _, meta = next(packings(quartz, 1, seed=1))
    assert sorted(atoms.numbers) == sorted(quartz.numbers) and meta["closest_ratio"] > 0.9
    with pytest.raises(ValueError, match="3D-periodic"):
        next(packings(next(slabs(base, 1))[0], 1))


# ---------------------------------------------------------------- molecular dynamics


def test_md_frames_reproducible_and_ramped():
    base = _cu32()
    first = md_frames(base, EMT(), 600.0, 40, 10, 2.0, 7, "md_600K", ramp_to=900.0)
    again = md_frames(base, EMT(), 600.0, 40, 10, 2.0, 7, "md_600K", ramp_to=900.0)
    assert [m["step"] for _, _, m in first] == [10, 20, 30, 40]
    for (a, ctype, meta), (b, _, _) in zip(first, again, strict=True):
        assert np.array_equal(a.positions, b.positions) and ctype == "md_600K"
        assert a.calc is None and meta["generator"] == "md" and "before_collapse" not in meta
    assert first[-1][2]["temperature"] == pytest.approx(900.0)
    assert np.array_equal(base.positions, _cu32().positions)  # the input is untouched


def test_melt_loses_crystalline_order():
    base = _cu32()
    assert _fcc_order(base) == pytest.approx(1.0)
    frames = melt(
        base, EMT(), 2500.0, steps=500, interval=50, seed=0, heat_fraction=0.6, check_every=10
    )
    assert len(frames) == 10
    liquid = [(a, m) for a, _, m in frames if m["phase"] == "melt"]
    assert liquid and all(m["melted_step"] is not None for _, m in liquid)
    assert np.mean([_fcc_order(a) for a, _ in liquid]) < 0.3
    assert liquid[-1][1]["volume"] > base.get_volume()  # the barostat let the liquid expand
    assert all(m["temperature"] == 2500.0 for _, m in liquid)


def test_melt_quench_ends_colder():
    frames = melt_quench(
        _cu32(),
        EMT(),
        2500.0,
        300.0,
        steps=400,
        interval=25,
        melt_fraction=0.25,
        heat_fraction=0.25,
    )
    metas = [m for _, _, m in frames]
    assert [m["phase"] for m in metas][-1] == "quench" and metas[-1]["step"] == 400
    assert metas[-1]["temperature"] == pytest.approx(300.0)
    quench = [m["kinetic_temperature"] for m in metas if m["phase"] == "quench"]
    assert np.mean(quench[-3:]) < 0.5 * np.mean(quench[:3])


class _Implode(Calculator):
    """Every atom pulled to the cell's centre by a spring: all arrive there together, a
    quarter period (~400 fs for Cu, k = 0.1 eV/Å²) after the start, with a kinetic
    temperature of a few 1000 K. With ``refuse_below``, it raises as a student does on atoms
    that overlap."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k=0.1, refuse_below=None):
        super().__init__()
        self.k, self.refuse_below = k, refuse_below

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.refuse_below is not None and shortest_distance(atoms) < self.refuse_below:
            raise ValueError("atoms overlap")
        d = atoms.positions - atoms.cell.array.sum(0) / 2
        self.results = {"energy": 0.5 * self.k * float((d * d).sum()), "forces": -self.k * d}


@pytest.mark.parametrize("refuse_below", [None, 1.0], ids=["distance", "calculator-error"])
def test_collapse_stops_and_keeps_the_frames_before_it(refuse_below):
    base = _cu32()
    steps = 400
    frames = md_frames(base, _Implode(refuse_below=refuse_below), 1000.0, steps, 10, 2.0, 0)
    metas = [m for _, _, m in frames]
    tagged = [m for m in metas if m.get("before_collapse")]
    assert 2 <= len(tagged) <= 3 and metas[-1]["step"] < steps
    assert [m["step"] for m in metas] == sorted(m["step"] for m in metas)
    assert {m["collapse_step"] for m in tagged} == {metas[-1]["step"] + 5}
    reason = tagged[0]["collapse_reason"]
    assert ("ValueError" in reason) if refuse_below else ("apart" in reason)
    assert any(m["step"] % 10 for m in tagged)  # ring-buffer snapshots between frames
    for atoms, _, _ in frames:
        assert np.isfinite(atoms.positions).all() and shortest_distance(atoms) >= 0.5
    # melt falls apart the same way (constant volume: the toy gives no stress)
    melted = melt(base, _Implode(), 1000.0, steps=400, interval=10, pressure=None)
    assert melted and melted[-1][2]["before_collapse"] and melted[-1][2]["step"] < 400


def test_md_refuses_a_start_it_cannot_run():
    base = _cu32()
    with pytest.raises(ValueError, match="overlap"):
        md_frames(base, _Implode(refuse_below=100.0), 300.0, 20, 10, 2.0, 0)
    with pytest.raises(ValueError, match="stress"):
        melt(base, _Implode(), 300.0, steps=20, interval=10)  # barostat without stress
    with pytest.raises(ValueError, match="interval"):
        md_frames(base, EMT(), 300.0, 20, 0, 2.0, 0)
