"""The ACE kernel's tables (:class:`~mlff.kernels.ace.ACETables`), built from an
:class:`~mlff.models.ace.ACEModel`'s radial basis, product plan and readout."""

from __future__ import annotations

import functools

import numpy as np
import torch

from mlff.kernels.ace import ACETables, HarmonicTables, ProductTables, ReadoutTables
from mlff.models.ace_product import CoupledPairType, InvariantProducts, ProductPlan
from mlff.models.harmonics import monomial_expansion

__all__ = ["ace_kernel_tables", "object_rows"]


def _indices(values: np.ndarray) -> np.ndarray:
    """Term indices in the narrowest unsigned type that holds them: the term tables are
    streamed once per block of atoms, so their size is memory traffic (uint16 for the default
    models; unsigned also spares numba the negative-index check)."""
    dtype = np.uint16 if values.size == 0 or int(values.max()) < 2**16 else np.uint32
    return np.ascontiguousarray(values, dtype=dtype)


def _interleaved(groups: np.ndarray) -> np.ndarray:
    """An order of terms in which consecutive terms add into different slots where possible
    (by rank within the slot's group, then slot), so the sums form no serial chain."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - np.searchsorted(sorted_groups, sorted_groups)
    return np.lexsort((groups, rank))


def object_rows(plan: ProductPlan) -> tuple[tuple[np.ndarray, ...], int]:
    """Where an atom's objects sit in its buffer of products (rows, one entry per atom).

    Rows 0 … n_a − 1 hold A (channel·n_lm + lm, n_lm = (l_max+1)²: every object A_{c,L} and
    every factor of the coupled pairs), row n_a the constant 1, then the coupled values of
    degree L that some basis function reads, by (L, m, object). A pair type's couplings are
    registered for every L the type serves, but most pairs enter a function at one L only (the
    default Si model reads 312 of its 580 coupled values), so the values nobody reads get no
    row and no terms. Which values are read follows from the basis (``plan.terms``), not from
    θ, so the rows hold for every θ.

    Returns, per pool L, the rows of its objects as a read-only (2L+1, n_L) int64 array (−1:
    not read) in the order of ``plan.pools[L]``, and the number of rows.
    """
    n_lm = (plan.l_max + 1) ** 2
    n_a = plan.n_channels * n_lm
    n_rows = n_a + 1
    row_of = []
    for pool, terms in zip(plan.pools, plan.terms, strict=True):
        L = pool.L
        rows = np.full((2 * L + 1, pool.size), -1, dtype=np.int64)
        rows[:, : pool.n_a] = (
            np.arange(pool.n_a)[None, :] * n_lm + L * L + np.arange(2 * L + 1)[:, None]
        )
        if pool.has_one:
            rows[0, pool.n_a] = n_a
        read = np.union1d(terms[:, 1], terms[:, 2])
        read = read[read >= pool.head]  # the coupled values (A and 1 have rows)
        rows[:, read] = n_rows + np.arange(rows.shape[0] * read.size).reshape(2 * L + 1, read.size)
        n_rows += rows.shape[0] * read.size
        rows.flags.writeable = False
        row_of.append(rows)
    return tuple(row_of), n_rows


def _pair_terms(pair: CoupledPairType, starts: dict[int, int], row_of, n_lm: int):
    """The terms (dest, i1, i2, weight) of one pair type, by pair u, then value q (its (L, m)),
    then the nonzeros (m1, m2) of the coupling; ``starts`` maps L to the type's block in pool
    L. Values without a row get no terms."""
    dest = np.concatenate(
        [row_of[L][:, starts[L] : starts[L] + pair.n_pairs].T for L in pair.ls], axis=1
    )  # (U, Σq): the row of value q of pair u, or −1
    q, m1, m2 = np.nonzero(np.abs(pair.coupling.transpose(2, 0, 1)) > 1e-15)  # (n_nz,) each
    c1, c2 = pair.channels[:, :1], pair.channels[:, 1:]  # (U, 1)
    dest = dest[:, q]  # (U, n_nz)
    i1 = np.broadcast_to(c1 * n_lm + pair.l1**2 + m1, dest.shape)
    i2 = np.broadcast_to(c2 * n_lm + pair.l2**2 + m2, dest.shape)
    weight = np.broadcast_to(pair.coupling[m1, m2, q], dest.shape)
    keep = dest >= 0
    return dest[keep], i1[keep], i2[keep], weight[keep]


def _product_terms(plan: ProductPlan, row_of) -> tuple[np.ndarray, ...]:
    """The coupled values of a :class:`ProductPlan` as flat terms
    ``buf[t_dest] += t_w · buf[t_i1] · buf[t_i2]`` over an atom's rows (:func:`object_rows`;
    t_i1, t_i2 < n_a are rows of A): one loop without the inner loops of one to seven
    iterations per coupling whose exits the branch predictor misses. Values without a row
    (read by no basis function) get no terms."""
    n_lm = (plan.l_max + 1) ** 2
    starts: list[dict[int, int]] = [{} for _ in plan.types]  # type → {L: start of its block}
    for pool in plan.pools:
        for t, start in pool.blocks:
            starts[t][pool.L] = start
    pieces = [
        _pair_terms(pair, where, row_of, n_lm)
        for pair, where in zip(plan.types, starts, strict=True)
    ]
    dest, i1, i2, weight = (
        np.concatenate([p[j] for p in pieces]) if pieces else np.zeros(0, dtype)
        for j, dtype in enumerate((np.int64, np.int64, np.int64, np.float64))
    )
    order = _interleaved(dest)
    return (
        _indices(dest[order]),
        _indices(i1[order]),
        _indices(i2[order]),
        np.ascontiguousarray(weight[order]),
    )


def _readout_terms(products: InvariantProducts, theta: torch.Tensor, row_of):
    """The folded readout ``M_L = M_L^T`` (:meth:`InvariantProducts.fold
    <mlff.models.ace_product.InvariantProducts.fold>`) per pool, as flat terms
    ``grad[out] += vals[species, z] · buf[in]`` over every pool and m: out, in (nnz,) rows of
    an atom's buffer (:func:`object_rows`), vals (n_species, nnz). M_L is sparse: each basis
    function adds one symmetric pair of entries, far fewer than n_L²."""
    folded = products.fold(theta.detach().double().cpu())
    out_idx, in_idx, vals = [], [], []
    for L, m in folded.items():
        m = m.numpy()  # (n_species, n_L, n_L)
        rows, cols = np.nonzero((m != 0).any(axis=0))  # the union over centre species
        for component in range(2 * L + 1):  # M_L acts on each of the 2L+1 rows alike
            out_idx.append(row_of[L][component, rows])
            in_idx.append(row_of[L][component, cols])
            vals.append(m[:, rows, cols])
    out_idx, in_idx = np.concatenate(out_idx), np.concatenate(in_idx)
    if (out_idx < 0).any() or (in_idx < 0).any():
        raise RuntimeError("the folded readout reads an object that no basis function names")
    order = _interleaved(out_idx)
    return (
        _indices(out_idx[order]),
        _indices(in_idx[order]),
        np.ascontiguousarray(np.concatenate(vals, axis=1)[:, order]),
    )


@functools.lru_cache(maxsize=16)
def _basis_tables(plan: ProductPlan):
    """The θ-independent tables of a plan (keyed by the plan object, which is immutable):
    object rows, product terms and the harmonics' monomial expansion, all read-only."""
    row_of, n_rows = object_rows(plan)
    products = _product_terms(plan, row_of)
    harmonics = monomial_expansion(plan.l_max)
    for array in (*products, *harmonics):
        array.flags.writeable = False
    return row_of, n_rows, products, harmonics


def ace_kernel_tables(
    model, dtype, theta: torch.Tensor | None = None, constant: torch.Tensor | None = None
) -> ACETables:
    """Everything the ACE kernel reads for ``model`` in numpy ``dtype``, with readout θ
    (n_elements, n_basis) (the model's own by default) and a fixed energy per centre species
    ``constant`` (n_elements,) eV, added to each site energy in float64 (in float32 sums it
    would cost float32 runs their last digits)."""
    dtype = np.dtype(dtype)
    plan = model.products.plan
    rows, n_rows, (dest, left, right, weight), harmonics = _basis_tables(plan)
    theta = model.readout.weight if theta is None else theta
    out, inp, values = _readout_terms(model.products, theta, rows)
    # Writable copies: the cached arrays are read-only, and numba compiles a kernel per array
    # type (read-only arrays are a type of their own).
    dest, left, right = (np.array(x) for x in (dest, left, right))
    exps, degree_start, ycoef, lower = (np.array(x) for x in harmonics)
    n_species = len(model.elements)
    site_constant = (
        np.zeros(n_species)
        if constant is None
        else np.ascontiguousarray(constant.detach().cpu().double().numpy())
    )
    return ACETables(
        radial=model.radial.kernel_tables(dtype),
        n_max=int(model.radial.n_max),
        n_channels=int(plan.n_channels),
        harmonics=HarmonicTables(exps, lower, degree_start, np.array(ycoef, dtype)),
        products=ProductTables(n_rows, dest, left, right, np.array(weight, dtype)),
        readout=ReadoutTables(out, inp, np.ascontiguousarray(values, dtype), site_constant),
    )
