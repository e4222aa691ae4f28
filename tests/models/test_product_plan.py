"""The public product plan of the ACE invariants: read-only, deterministic, and the single
definition that InvariantProducts (forward and closed-form adjoint) and its readout fold follow.

Objects are rebuilt here from the plan's arrays alone, in numpy, so a plan that disagrees with
the torch module, or with the direct contraction of InvariantGradients, fails."""

import dataclasses

import numpy as np
import pytest
import torch

from mlff.models.ace import ACEModel
from mlff.models.ace_basis import enumerate_ace_basis
from mlff.models.ace_jacobian import InvariantGradients
from mlff.models.ace_product import InvariantProducts, ProductPlan, product_plan
from mlff.models.ace_tables import ace_kernel_tables, object_rows

# (elements, n_max, l_max, max_degree): ν ≤ 3 (no pairs×pairs products), ν = 4, two elements,
# and ν = 4 with a pair stored swapped at odd l1 + l2 + L (sign −1: see test below).
CASES = {
    "si-nu3": (("Si",), 3, 3, {1: 10, 2: 15, 3: 14}),
    "si-nu4": (("Si",), 3, 3, {1: 10, 2: 15, 3: 14, 4: 12}),
    "sic-nu4": (("Si", "C"), 2, 2, {1: 4, 2: 6, 3: 7, 4: 8}),
    "si-swapped": (("Si",), 2, 2, {1: 4, 4: 14}),
}
N_ATOMS = 6


@pytest.fixture(params=sorted(CASES))
def case(request):
    elements, n_max, l_max, max_degree = CASES[request.param]
    spec = enumerate_ace_basis(elements, n_max, l_max, max_degree)
    products = InvariantProducts(spec, elements, n_max, l_max)
    gen = torch.Generator().manual_seed(7)
    a_by_l = [
        torch.randn(len(elements) * n_max, N_ATOMS, 2 * l + 1, generator=gen, dtype=torch.float64)
        for l in range(l_max + 1)
    ]
    theta = torch.randn(len(elements), len(spec), generator=gen, dtype=torch.float64)
    species = torch.arange(N_ATOMS) % len(elements)
    return dict(
        args=(spec, elements, n_max, l_max),
        products=products,
        a_by_l=a_by_l,
        theta=theta,
        species=species,
    )


def _arrays(plan: ProductPlan) -> dict[str, np.ndarray]:
    out = {"sign": plan.sign}
    out.update({f"terms[{L}]": t for L, t in enumerate(plan.terms)})
    for t, pair in enumerate(plan.types):
        out[f"types[{t}].channels"] = pair.channels
        out[f"types[{t}].coupling"] = pair.coupling
    return out


def _objects(plan: ProductPlan, a_by_l: list[np.ndarray]) -> list[np.ndarray]:
    """The objects (n_L, N, 2L+1) of every pool, from the plan's arrays only."""
    n_atoms = a_by_l[0].shape[1]
    pools = []
    for pool in plan.pools:
        L, d = pool.L, 2 * pool.L + 1
        parts = [a_by_l[L]] if pool.n_a else []
        assert pool.n_a == (plan.n_channels if L <= plan.l_max else 0)
        if pool.has_one:
            parts.append(np.ones((1, n_atoms, 1)))
        for t, start in pool.blocks:
            assert start == sum(p.shape[0] for p in parts), "blocks follow A, 1 and each other"
            pair = plan.types[t]
            q0 = sum(pair.widths[: pair.ls.index(L)])
            x1 = a_by_l[pair.l1][pair.channels[:, 0]]  # (U, N, d1)
            x2 = a_by_l[pair.l2][pair.channels[:, 1]]  # (U, N, d2)
            parts.append(np.einsum("abq,una,unb->unq", pair.coupling[:, :, q0 : q0 + d], x1, x2))
        objects = np.concatenate(parts)
        assert objects.shape[0] == pool.size
        pools.append(objects)
    return pools


def _basis_from_plan(plan: ProductPlan, a_by_l: list[np.ndarray]) -> np.ndarray:
    """B (n_atoms, n_basis) as sign_k O_{L,a}·O_{L,b}."""
    objects = _objects(plan, a_by_l)
    b = np.full((a_by_l[0].shape[1], plan.n_basis), np.nan)
    for L, terms in enumerate(plan.terms):
        k, first, second = terms.T
        b[:, k] = plan.sign[k] * (objects[L][first] * objects[L][second]).sum(-1).T
    return b


def test_plan_arrays_are_read_only_and_the_plan_is_frozen(case):
    plan = case["products"].plan
    for name, array in _arrays(plan).items():
        assert not array.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            array.reshape(-1)[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.l_max = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.pools[0].size = 0


def test_plan_shapes_and_every_function_once(case):
    plan = case["products"].plan
    spec = case["args"][0]
    assert plan.n_basis == len(spec)
    ks = np.concatenate([t[:, 0] for t in plan.terms])
    np.testing.assert_array_equal(np.sort(ks), np.arange(len(spec)))
    assert set(np.abs(plan.sign)) == {1.0}
    for L, (pool, terms) in enumerate(zip(plan.pools, plan.terms, strict=True)):
        assert pool.L == L and terms.shape[1] == 3 and terms.dtype == np.int64
        assert ((terms[:, 1:] >= 0) & (terms[:, 1:] < pool.size)).all()
        for t, _ in pool.blocks:
            assert L in plan.types[t].ls
    for pair in plan.types:
        assert pair.l1 <= pair.l2 and pair.channels.shape == (pair.n_pairs, 2)
        assert pair.coupling.shape == (2 * pair.l1 + 1, 2 * pair.l2 + 1, sum(pair.widths))
        assert len(np.unique(pair.channels, axis=0)) == pair.n_pairs


def test_a_pair_stored_swapped_costs_its_sign():
    """(1,1)(1,2)(1,2)(2,1) →L=2: the pair (l=2, l=1) is stored as (1, 2), which costs
    (−1)^(2+1+2); the other tests check B against the direct contraction with this sign."""
    elements, n_max, l_max, max_degree = CASES["si-swapped"]
    spec = enumerate_ace_basis(elements, n_max, l_max, max_degree)
    plan = product_plan(spec, elements, n_max, l_max)
    negative = [str(spec[k]) for k in np.flatnonzero(plan.sign < 0)]
    assert negative == ["ν=4: Si(n=1,l=1) ⊗ Si(n=1,l=2) ⊗ Si(n=1,l=2) ⊗ Si(n=2,l=1) →L=2"]


def test_building_the_plan_twice_gives_equal_arrays(case):
    first, second = case["products"].plan, product_plan(*case["args"])
    assert first is not second
    assert (first.n_channels, first.l_max, first.pools) == (
        second.n_channels,
        second.l_max,
        second.pools,
    )
    assert [(p.l1, p.l2, p.ls) for p in first.types] == [(p.l1, p.l2, p.ls) for p in second.types]
    one, two = _arrays(first), _arrays(second)
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].dtype == two[name].dtype, name
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_basis_from_the_plan_matches_forward_and_the_direct_contraction(case):
    products, a_by_l = case["products"], case["a_by_l"]
    expected = _basis_from_plan(products.plan, [a.numpy() for a in a_by_l])
    forward = products(a_by_l).numpy()
    direct, _ = InvariantGradients(*case["args"])(a_by_l)  # Σ C·(x_1 ⊗ … ⊗ x_ν), no plan
    np.testing.assert_allclose(forward, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(direct.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_energy_and_adjoint_match_the_linear_readout_and_autograd(case):
    products, theta, species = case["products"], case["theta"], case["species"]
    a_by_l = [a.clone().requires_grad_(True) for a in case["a_by_l"]]
    energy, adjoint = products.energy_and_adjoint([a.detach() for a in a_by_l], theta, species)
    reference = (products(a_by_l) * theta[species]).sum(1)  # E_i = Σ_k θ_{s_i k} B_ik
    torch.testing.assert_close(energy, reference.detach(), rtol=1e-11, atol=1e-11)
    grads = torch.autograd.grad(reference.sum(), a_by_l, allow_unused=True)
    assert len(adjoint) == len(grads)
    for a, mine, auto in zip(a_by_l, adjoint, grads, strict=True):
        assert mine.shape == a.shape
        expected = torch.zeros_like(a) if auto is None else auto  # A_l read by no function
        torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-10)


def test_fold_is_symmetric_and_its_quadratic_form_is_the_energy(case):
    products, theta, species = case["products"], case["theta"], case["species"]
    plan = products.plan
    folded = products.fold(theta)
    assert set(folded) == {L for L, t in enumerate(plan.terms) if len(t)}
    objects = _objects(plan, [a.numpy() for a in case["a_by_l"]])
    s = species.numpy()
    energy = np.zeros(N_ATOMS)
    for L, m in folded.items():
        m = m.numpy()
        assert m.shape == (theta.shape[0], plan.pools[L].size, plan.pools[L].size)
        np.testing.assert_array_equal(m, m.transpose(0, 2, 1))
        energy += 0.5 * np.einsum("aim,iab,bim->i", objects[L], m[s], objects[L])
    reference = _basis_from_plan(plan, [a.numpy() for a in case["a_by_l"]]) * theta[s].numpy()
    np.testing.assert_allclose(energy, reference.sum(1), rtol=1e-11, atol=1e-11)


def test_fold_does_not_cache_on_theta(case):
    """The fold is a pure function of θ: editing θ in place changes the next fold."""
    products, theta = case["products"], case["theta"].clone()
    before = products.fold(theta)
    theta.mul_(2.0)
    after = products.fold(theta)
    for L in before:
        torch.testing.assert_close(after[L], 2.0 * before[L])


def test_module_follows_dtype_and_keeps_no_f_string_buffers(case):
    products = case["products"]
    names = [name for name, _ in products.named_buffers()]
    assert names and all(
        name.split(".")[-1] in {"spec_order", "first", "second", "coupling", "basis", "sign"}
        for name in names
    )
    single = InvariantProducts(*case["args"]).float()
    assert single.plan.sign.dtype == np.float64  # the plan is not the module's to convert
    b32 = single([a.float() for a in case["a_by_l"]])
    assert b32.dtype == torch.float32
    torch.testing.assert_close(b32.double(), products(case["a_by_l"]), rtol=1e-4, atol=1e-4)


def test_object_rows_give_every_read_object_a_row_of_its_own(case):
    plan = case["products"].plan
    row_of, n_rows = object_rows(plan)
    n_a = plan.n_channels * (plan.l_max + 1) ** 2
    coupled = []
    for L, (rows, terms) in enumerate(zip(row_of, plan.terms, strict=True)):
        assert rows.shape == (2 * L + 1, plan.pools[L].size) and not rows.flags.writeable
        assert (rows[:, terms[:, 1:]] >= 0).all()  # every object a function reads has rows
        coupled.extend(rows[:, plan.pools[L].head :][rows[:, plan.pools[L].head :] >= 0])
    np.testing.assert_array_equal(np.sort(coupled), np.arange(n_a + 1, n_rows))


def test_kernel_tables_are_writable_and_the_same_on_every_call():
    model = ACEModel(["Si", "C"], cutoff=4.0, n_max=2, l_max=2, max_degree=CASES["sic-nu4"][3])
    torch.nn.init.uniform_(model.readout.weight, 0.5, 1.5)
    first, second = ace_kernel_tables(model, np.float64), ace_kernel_tables(model, np.float64)
    for part in ("harmonics", "products", "readout"):
        for name, x in getattr(first, part)._asdict().items():
            if isinstance(x, np.ndarray):
                assert x.flags.writeable and x.flags.c_contiguous, (part, name)
                np.testing.assert_array_equal(x, getattr(getattr(second, part), name))
                assert not np.shares_memory(x, getattr(getattr(second, part), name))
