"""The compiled CPU kernels (numba) against the torch closed forms they replace."""

import numba
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from helpers import STRUCTURES, make_ace, make_pair, make_stack

from mlff import ACEModel, SiteCalculator, StackedCalculator, build_graph
from mlff.evaluator import Evaluator
from mlff.graph import EdgeArrays, Graph
from mlff.models.ace_tables import ace_kernel_tables
from mlff.testing import random_linear_parameters


def _edges(graph: Graph) -> EdgeArrays:
    """The numpy view of a graph that the compiled kernels read."""
    arrays = (graph.numbers, graph.centers, graph.neighbors, graph.vectors)
    return EdgeArrays(*(np.ascontiguousarray(a.numpy()) for a in arrays), graph.cutoff)


def _kernel(model, graph):
    """E_i and ∂E/∂r_e of the numba route, as tensors."""
    energies, grads = Evaluator(model).kernel_energies_and_grads(_edges(graph))
    return torch.from_numpy(energies), torch.from_numpy(grads)


def _both_backends(model, graph):
    """The numba and torch routes of ``model``."""
    return _kernel(model, graph), model.energies_and_grads(graph)


def _registered_coupled_values(plan) -> int:
    """Coupled values the plan's pools hold per atom (objects beyond A and 1, times 2L+1)."""
    return sum((2 * pool.L + 1) * (pool.size - pool.head) for pool in plan.pools)


def _run(model, edges: EdgeArrays, n_threads: int):
    """One part's compiled kernel on ``edges`` with ``n_threads`` threads."""
    (part, *_) = model.compiled(edges.vectors.dtype)  # the model's kernel, not its ZBL core
    return part.run(edges, edges.species(part.elements, part.owner), n_threads)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("make", [make_ace, make_pair, make_stack], ids=["ace", "pair", "stack"])
def test_kernels_match_torch_closed_forms(make, name):
    model = make()
    graph = build_graph(STRUCTURES[name](), model.cutoff)
    (energies, grads), (ref_energies, ref_grads) = _both_backends(model, graph)
    assert energies.dtype == grads.dtype == torch.float64
    scale_e = max(1.0, float(ref_energies.abs().max()))
    assert float((energies - ref_energies).abs().max()) < 1e-12 * scale_e
    scale_g = float(ref_grads.abs().max())
    assert scale_g > 0
    assert float((grads - ref_grads).abs().max()) < 1e-11 * scale_g


def test_default_si_ace_kernel_matches_torch_with_fourth_order_functions():
    """The default hyper-parameters plus ν = 4, where the folded readout has a T×T block."""
    model = ACEModel(["Si"], cutoff=5.0, max_degree={1: 10, 2: 15, 3: 14, 4: 12})
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=3)
    random_linear_parameters(model, atoms, energy_scale=0.5, seed=4)
    assert {f.order for f in model.basis_spec} == {1, 2, 3, 4}
    (energies, grads), (ref_energies, ref_grads) = _both_backends(
        model, build_graph(atoms, model.cutoff)
    )
    torch.testing.assert_close(
        energies, ref_energies, rtol=0, atol=1e-12 * float(ref_energies.abs().max())
    )
    torch.testing.assert_close(grads, ref_grads, rtol=0, atol=1e-11 * float(ref_grads.abs().max()))


@pytest.mark.parametrize(
    "max_degree", [{1: 10, 2: 15, 3: 14}, {1: 10, 2: 15, 3: 14, 4: 12}], ids=["nu3", "nu4"]
)
def test_ace_kernel_computes_only_the_coupled_values_its_readout_reads(max_degree):
    """Rows of the kernel's object buffer: all of A, the constant, and exactly the coupled
    values that the folded readout (θ without zeros) reads; the default Si basis registers
    many more coupled values than its functions read."""
    model = ACEModel(["Si"], cutoff=5.0, max_degree=max_degree)
    torch.nn.init.uniform_(model.readout.weight, 0.5, 1.5)
    tables = ace_kernel_tables(model, np.float64)
    n_rows, t_dest = tables.products.n_rows, tables.products.dest
    n_a = tables.n_channels * tables.harmonics.ycoef.shape[0]
    read = np.union1d(tables.readout.out, tables.readout.inp)
    coupled_rows = np.arange(n_a + 1, n_rows)
    np.testing.assert_array_equal(np.unique(t_dest), coupled_rows)  # each coupled row is written
    assert set(coupled_rows) <= set(read.tolist())  # ... and read
    assert len(coupled_rows) < 0.75 * _registered_coupled_values(model.products.plan)


def test_ace_kernel_accepts_edges_in_any_order_and_any_thread_count():
    model = make_ace()
    graph = build_graph(STRUCTURES["triclinic-sic"](), model.cutoff)
    assert bool((graph.centers[1:] >= graph.centers[:-1]).all()), "graphs group edges by centre"
    perm = torch.randperm(graph.n_edges, generator=torch.Generator().manual_seed(0))
    shuffled = Graph(
        graph.positions,
        graph.numbers,
        graph.edge_index[:, perm].contiguous(),
        graph.shifts[perm],
        graph.vectors[perm].contiguous(),
        graph.cell,
        graph.pbc,
        graph.cutoff,
    )
    energies, grads = _kernel(model, graph)
    shuffled_energies, shuffled_grads = _kernel(model, shuffled)
    torch.testing.assert_close(shuffled_energies, energies, rtol=0, atol=1e-13)
    torch.testing.assert_close(shuffled_grads, grads[perm], rtol=0, atol=1e-13)
    for threads in (2, 3):
        e_t, g_t = _run(model, _edges(graph), threads)
        np.testing.assert_allclose(e_t, energies.numpy(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(g_t, grads.numpy(), rtol=0, atol=1e-13)


def test_kernels_follow_parameter_changes():
    """A refit through the API reaches the next call of the same calculator."""
    model = make_ace()
    atoms = STRUCTURES["rattled-si"]()
    calc = SiteCalculator(model)
    calc.calculate(atoms, ["energy"])
    before = calc.results["energy"]
    model.set_linear_parameters(2.0 * model.get_linear_parameters())
    calc.calculate(atoms, ["energy"], ["positions"])
    reference = SiteCalculator(model, backend="torch")
    reference.calculate(atoms, ["energy"])
    assert calc.results["energy"] == pytest.approx(2.0 * before, rel=1e-10)
    assert calc.results["energy"] == pytest.approx(reference.results["energy"], rel=1e-10)


def test_float32_kernels_agree_with_float64():
    stack = make_stack()
    graph64 = build_graph(STRUCTURES["si-slab"](), stack.cutoff)
    graph32 = build_graph(STRUCTURES["si-slab"](), stack.cutoff, dtype=torch.float32)
    e64, g64 = _kernel(stack, graph64)
    e32, g32 = _kernel(stack.to(torch.float32), graph32)
    assert g32.dtype == torch.float32
    assert float((g32.double() - g64).abs().max()) < 1e-4 * float(g64.abs().max())
    assert float((e32.double() - e64).abs().max()) < 1e-5 * max(1.0, float(e64.abs().max()))


def test_calculator_backends_agree_and_leave_the_callers_model_alone():
    atoms = STRUCTURES["rattled-si"]()
    stack = make_stack()
    results = {}
    for backend in ("auto", "numba", "torch"):
        calc = StackedCalculator(stack, backend=backend)
        calc.calculate(atoms, ["energy", "forces", "stress"])
        results[backend] = calc.results
    assert stack.dtype == torch.float64
    for backend in ("numba", "torch"):
        np.testing.assert_allclose(
            results[backend]["forces"], results["auto"]["forces"], rtol=0, atol=1e-10
        )
        np.testing.assert_allclose(
            results[backend]["stress"], results["auto"]["stress"], rtol=0, atol=1e-12
        )
    assert StackedCalculator(stack).evaluator.path == "numba kernels"
    assert StackedCalculator(stack, backend="torch").evaluator.path == "eager"


def test_bad_backends_are_refused():
    with pytest.raises(
        ValueError, match=r"backend must be one of \['auto', 'torch', 'numba'\], got 'fortran'"
    ):
        StackedCalculator(make_stack(), backend="fortran")
    with pytest.raises(ValueError, match="compile=True runs torch.compile on the torch backend"):
        StackedCalculator(make_stack(), backend="numba", compile=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_numba_backend_refuses_cuda():
    with pytest.raises(ValueError, match="backend 'numba' runs on the CPU only"):
        SiteCalculator(make_ace(), device="cuda", backend="numba")


def test_center_offsets_of_grouped_and_ungrouped_edges():
    from mlff.kernels.edges import center_offsets_into

    centers = np.array([1, 1, 1, 3, 4, 4, 6], dtype=np.int64)  # atoms 0, 2, 5 and 7 have no edges
    start = np.full(9, -1, dtype=np.int64)
    assert center_offsets_into(centers, start)
    np.testing.assert_array_equal(start, [0, 0, 3, 3, 4, 6, 6, 7, 7])
    np.testing.assert_array_equal(np.diff(start), np.bincount(centers, minlength=8))
    assert center_offsets_into(np.zeros(0, dtype=np.int64), start)
    np.testing.assert_array_equal(start, np.zeros(9))
    assert not center_offsets_into(np.array([0, 2, 1], dtype=np.int64), start)  # not grouped
    assert not center_offsets_into(
        np.array([0, 9], dtype=np.int64), start
    )  # a centre beyond n_atoms
    from mlff.graph import EdgeArrays, center_offsets

    assert center_offsets(np.array([0, 2, 1]), 3) is None
    ungrouped = EdgeArrays(
        np.full(3, 14), np.array([0, 2, 1]), np.array([1, 0, 2]), np.ones((3, 3)), 5.0
    )
    assert (
        ungrouped.offsets is None and ungrouped.offsets is None
    )  # known, not recomputed into a wrong answer


@pytest.mark.parametrize("max_degree", [{1: 6}, {1: 6, 2: 8}], ids=["order-1", "order-2"])
def test_ace_kernel_with_low_correlation_orders(max_degree):
    """Order 1 has no coupled pairs at all (empty term lists); two elements mix species in a
    block."""
    model = ACEModel(["Si", "C"], cutoff=4.0, n_max=4, l_max=2, max_degree=max_degree)
    atoms = bulk("SiC", "zincblende", a=4.36).repeat(2)
    atoms.rattle(0.05, seed=1)
    random_linear_parameters(model, atoms, energy_scale=0.5, seed=2)
    (energies, grads), (ref_energies, ref_grads) = _both_backends(
        model, build_graph(atoms, model.cutoff)
    )
    assert float((energies - ref_energies).abs().max()) < 1e-12 * max(
        1.0, float(ref_energies.abs().max())
    )
    assert float((grads - ref_grads).abs().max()) < 1e-11 * float(ref_grads.abs().max())


def test_ace_kernel_blocks_of_one_element_other_than_the_first():
    """Two blocks of 8 atoms: all C (species 1 of H, C, Si), then all Si (species 2).
    Mixed blocks and short last blocks are covered by the test structures above."""
    model = make_ace()
    atoms = bulk("SiC", "zincblende", a=4.36, cubic=True).repeat((2, 1, 1))  # 16 atoms, 8 of each
    order = np.argsort([0 if s == "C" else 1 for s in atoms.get_chemical_symbols()], kind="stable")
    atoms = atoms[order]
    atoms.rattle(0.05, seed=5)
    graph = build_graph(atoms, model.cutoff)
    (energies, grads), (ref_energies, ref_grads) = _both_backends(model, graph)
    assert float((energies - ref_energies).abs().max()) < 1e-12 * max(
        1.0, float(ref_energies.abs().max())
    )
    assert float((grads - ref_grads).abs().max()) < 1e-11 * float(ref_grads.abs().max())


@pytest.mark.parametrize(
    "lonely",
    [(0,), (3, 4), (7,), (0, 6, 10, 12), tuple(range(8, 16))],
    ids=["first-lane", "middle-lanes", "last-lane", "spread", "whole-block"],
)
@pytest.mark.parametrize(
    "elements", [("Si",), ("H", "C", "Si")], ids=["one-element", "three-elements"]
)
def test_ace_kernel_with_atoms_that_have_no_neighbours(lonely, elements):
    """Edges are read per block of 8 atoms: atoms without edges anywhere in a block (and a
    whole block of them), in serial and threaded ranges that are not multiples of 8 (19 atoms:
    blocks of 8, 8 and 3), must give what the torch closed form gives."""
    model = ACEModel(list(elements), cutoff=4.0, n_max=4, l_max=2, max_degree={1: 4, 2: 5, 3: 6})
    rng = np.random.default_rng(4)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)[:5] * (2, 2, 1)
    atoms = atoms[: 19 - len(lonely)]
    atoms.pbc, atoms.cell = False, None
    atoms.positions = atoms.positions + 0.05 * rng.standard_normal(atoms.positions.shape)
    positions = list(atoms.positions)
    for k, slot in enumerate(lonely):  # far from everything and from each other
        positions.insert(slot, np.array([60.0 + 15.0 * k, -40.0, 30.0]))
    symbols = [elements[k % len(elements)] for k in range(len(positions))]
    atoms = Atoms(symbols, positions=positions)
    random_linear_parameters(model, atoms, energy_scale=0.5, seed=3)
    graph = build_graph(atoms, model.cutoff)
    counts = torch.bincount(graph.centers, minlength=len(atoms))
    assert all(int(counts[i]) == 0 for i in lonely) and int(counts.sum()) > 0
    reference = model.energies_and_grads(graph)
    for threads in (1, 2, 3):
        energies, grads = _run(model, _edges(graph), threads)
        scale_e = max(1.0, float(reference[0].abs().max()))
        assert np.abs(energies - reference[0].numpy()).max() < 1e-12 * scale_e
        assert np.abs(grads - reference[1].numpy()).max() < 1e-11 * float(reference[1].abs().max())


def test_slp_vectorized_is_scoped_to_its_block():
    """The kernels turn on LLVM's SLP vectoriser only while they compile: numba's process-wide
    setting is restored afterwards, also when the call raises."""
    import numba

    from mlff.kernels.common import slp_vectorized

    before = numba.config.SLP_VECTORIZE
    with slp_vectorized():
        assert numba.config.SLP_VECTORIZE == 1
    assert numba.config.SLP_VECTORIZE == before
    with pytest.raises(RuntimeError), slp_vectorized():
        raise RuntimeError("inside")
    assert numba.config.SLP_VECTORIZE == before
    # Overlapping uses (as from two threads) restore the setting when the last one leaves.
    first, second = slp_vectorized(), slp_vectorized()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert numba.config.SLP_VECTORIZE == 1
    second.__exit__(None, None, None)
    assert numba.config.SLP_VECTORIZE == before


@pytest.mark.parametrize(
    "p, q, envelope_p", [(2, 4, 6), (1, 2, 2), (3, 7, 5), (5, 6, 9), (1, 5, 1), (1, 40, 33)]
)
def test_radial_kernel_matches_torch_for_other_exponents(p, q, envelope_p):
    """The kernel's branch-free integer powers against the torch radial basis, across the
    cutoff (zero beyond it), for transform and envelope exponents other than the defaults."""
    from mlff.kernels.radial import radial_with_derivative
    from mlff.models.radial import RadialBasis, default_r0

    radial = RadialBasis(9, 4.5, default_r0(["Si"]), envelope_p=envelope_p)
    radial.transform.p, radial.transform.q = p, q
    r = torch.linspace(0.6, 5.0, 101, dtype=torch.float64)
    zeros = torch.zeros_like(r, dtype=torch.long)
    want, want_d = radial.with_derivative(r, zeros, zeros)
    tables = radial.kernel_tables(np.float64)
    w = r.numel()
    per_edge = [np.full(w, t[0, 0]) for t in (tables.inv_r0, tables.scale, tables.offset)]
    rad, drad = np.empty((9, w)), np.empty((9, w))
    radial_with_derivative(r.numpy(), *per_edge, tables, w, np.empty((4, w)), rad, drad)
    assert float(want.abs().max()) > 0.1 and bool((want[r >= 4.5] == 0).all())
    np.testing.assert_allclose(rad.T, want.numpy(), rtol=0, atol=1e-12 * float(want.abs().max()))
    np.testing.assert_allclose(
        drad.T, want_d.numpy(), rtol=0, atol=1e-11 * float(want_d.abs().max())
    )


@pytest.mark.parametrize("inner", [(0.5, 0.7), (0.0, 1.2)])
def test_inner_switch_kernel_matches_torch_and_its_derivative(inner):
    """With an inner switch the basis is zero below start·r0, untouched above end·r0, and
    kernel, torch and a finite difference agree on R and dR/dr across the switch."""
    from mlff.kernels.radial import radial_with_derivative
    from mlff.models.radial import RadialBasis, default_r0

    r0 = default_r0(["Si"])
    radial = RadialBasis(7, 5.0, r0, inner=inner)
    plain = RadialBasis(7, 5.0, r0)
    r = torch.linspace(0.3, 4.0, 201, dtype=torch.float64)
    zeros = torch.zeros_like(r, dtype=torch.long)
    want, want_d = radial.with_derivative(r, zeros, zeros)
    start, end = (f * float(r0[0, 0]) for f in inner)
    assert bool((want[r <= start] == 0).all())
    np.testing.assert_allclose(want[r >= end], plain(r, zeros, zeros)[r >= end], rtol=1e-14)
    h = 1e-6
    fd = (radial(r + h, zeros, zeros) - radial(r - h, zeros, zeros)) / (2 * h)
    np.testing.assert_allclose(want_d.numpy(), fd.numpy(), atol=1e-7 * float(want_d.abs().max()))
    tables = radial.kernel_tables(np.float64)
    w = r.numel()
    per_edge = [np.full(w, t[0, 0]) for t in (tables.inv_r0, tables.scale, tables.offset)]
    rad, drad = np.empty((7, w)), np.empty((7, w))
    radial_with_derivative(r.numpy(), *per_edge, tables, w, np.empty((4, w)), rad, drad)
    np.testing.assert_allclose(rad.T, want.numpy(), rtol=0, atol=1e-12 * float(want.abs().max()))
    np.testing.assert_allclose(
        drad.T, want_d.numpy(), rtol=0, atol=1e-11 * float(want_d.abs().max())
    )


def test_inner_switch_refuses_bad_fractions():
    from mlff.models.radial import InnerSwitch

    for start, end in [(0.7, 0.5), (-0.1, 0.5), (0.5, 3.0)]:
        with pytest.raises(ValueError, match="0 <= start < end <= 2"):
            InnerSwitch(start, end)


def test_radial_exponents_beyond_the_kernels_are_refused():
    from mlff.kernels.common import MAX_KERNEL_POWER
    from mlff.models.radial import RadialBasis, default_r0

    radial = RadialBasis(4, 5.0, default_r0(["Si"]), envelope_p=MAX_KERNEL_POWER + 1)
    with pytest.raises(
        ValueError, match=f"exponents from 1 to {MAX_KERNEL_POWER}.*envelope p.*backend='torch'"
    ):
        radial.kernel_tables(np.float64)
    radial = RadialBasis(4, 5.0, default_r0(["Si"]))
    radial.transform.p = radial.transform.q  # set after construction, which refuses it
    with pytest.raises(ValueError, match="exponents from 1.*'q - p': 0"):
        radial.kernel_tables(np.float64)


def test_kernel_path_follows_changes_of_every_parts_parameters():
    """Pair θ, E0 and ACE θ, each changed between calls of one calculator (in place and
    declared, or through the API): the next call sees the change."""
    atoms = STRUCTURES["rattled-si"]()
    calc = StackedCalculator(make_stack())
    one, pair, ace = calc.model.parts

    def energy():
        atoms.positions[0, 0] += 1e-9  # a new MD-like step on the kept list
        calc.calculate(atoms, ["energy", "forces"], ["positions"])
        return calc.results["energy"]

    base = energy()
    with torch.no_grad():
        pair.readout.weight.mul_(2.0)
    pair.parameters_changed()
    pair_energy = float(pair.site_energies(build_graph(atoms, pair.cutoff)).sum()) / 2.0
    assert energy() == pytest.approx(base + pair_energy, rel=1e-9)
    with torch.no_grad():
        one.e0.add_(0.25)
    one.parameters_changed()
    assert energy() == pytest.approx(base + pair_energy + 0.25 * len(atoms), rel=1e-9)
    ace_theta = ace.get_linear_parameters().clone()
    ace.set_linear_parameters(torch.zeros_like(ace_theta))
    reference = StackedCalculator(calc.model, backend="torch")
    reference.calculate(atoms, ["energy"], ["positions"])
    assert energy() == pytest.approx(reference.results["energy"], rel=1e-9)
    # New tensors (a dtype round trip: r0 is rounded too), then in-place changes.
    ace.set_linear_parameters(ace_theta)
    calc.model.to(torch.float32).to(torch.float64)
    with torch.no_grad():
        one.e0.add_(1.0)
        pair.readout.weight.mul_(0.5)
    calc.model.parameters_changed()
    reference = StackedCalculator(calc.model, backend="torch")
    reference.calculate(atoms, ["energy"], ["positions"])
    assert energy() == pytest.approx(reference.results["energy"], rel=1e-9)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_pair_kernel_on_threads_matches_serial_in_any_edge_order(threads, monkeypatch):
    """Edge ranges per thread, each summing its own site energies: the same energies,
    gradients and shortest edge as one thread, also with the edges shuffled (ranges then
    share centres)."""
    from mlff.kernels.pair import pair_energies_and_grads

    model = make_pair()
    graph = build_graph(STRUCTURES["triclinic-sic"](), model.cutoff)
    perm = np.random.default_rng(0).permutation(graph.n_edges)
    vectors, centers, neighbors = (
        np.ascontiguousarray(a[perm])
        for a in (graph.vectors.numpy(), graph.centers.numpy(), graph.neighbors.numpy())
    )
    species = model.species(graph).numpy()
    tables = model.kernel_tables(np.float64)
    e_ref, g_ref, r_ref = pair_energies_and_grads(tables, vectors, centers, neighbors, species, 1)
    monkeypatch.setattr("mlff.kernels.pair.EDGES_PER_THREAD", 16)  # so this graph is split
    numba_before = numba.get_num_threads()
    energies, grads, r_min = pair_energies_and_grads(
        tables, vectors, centers, neighbors, species, threads
    )
    assert numba.get_num_threads() == numba_before  # the kernel leaves numba's setting alone
    assert r_min == r_ref == pytest.approx(float(np.linalg.norm(vectors, axis=1).min()))
    np.testing.assert_allclose(energies, e_ref, rtol=0, atol=1e-13 * np.abs(e_ref).max())
    np.testing.assert_allclose(grads, g_ref, rtol=0, atol=1e-14 * np.abs(g_ref).max())
