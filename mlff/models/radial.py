"""Radial building blocks: a distance transform, a polynomial basis and a cutoff envelope.

Each is a small module with its constants as buffers. Shapes: distances (n_edges,),
outputs (n_edges, n_basis). Each formula is written once here in torch (values and
derivatives together) and once in the compiled kernel (:mod:`mlff.kernels.radial`), which
reads its constants from :meth:`RadialBasis.kernel_tables`; tests compare the two.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers, covalent_radii
from torch import nn

from mlff.kernels.common import MAX_KERNEL_POWER
from mlff.kernels.radial import RadialTables

__all__ = [
    "AgnesiTransform",
    "InnerSwitch",
    "ChebyshevBasis",
    "PolynomialEnvelope",
    "RadialBasis",
    "check_r0",
    "default_r0",
]


def default_r0(elements) -> torch.Tensor:
    """(n_elements, n_elements) typical bond lengths, Å: sums of ASE covalent radii."""
    radii = torch.tensor([covalent_radii[atomic_numbers[e]] for e in elements], dtype=torch.float64)
    return radii[:, None] + radii[None, :]


def check_r0(r0, elements) -> torch.Tensor:
    """``r0`` as a validated (n_elements, n_elements) symmetric tensor; ``None`` gives the
    default."""
    if r0 is None:
        return default_r0(elements)
    r0 = torch.as_tensor(r0, dtype=torch.float64)
    n = len(elements)
    if (
        r0.shape != (n, n)
        or not bool(torch.isfinite(r0).all() and (r0 > 0).all())
        or not torch.equal(r0, r0.T)
    ):
        raise ValueError(
            f"r0 must be a symmetric ({n}, {n}) tensor of positive bond lengths in Å for elements "
            f"{list(elements)}, got shape {tuple(r0.shape)} and values {r0.tolist()}"
        )
    return r0


class PolynomialEnvelope(nn.Module):
    """``f(r) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2}``, ``x = r/r_c``.

    f, f' and f'' vanish at the cutoff; f = 0 beyond it.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        if int(p) != p or p < 1:
            raise ValueError(f"the envelope power p must be an integer >= 1, got {p!r}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.with_derivative(r)[0]

    def with_derivative(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f and df/dr (n_edges,), 1/Å: ``df/dr = -c x^(p-1) (1 - x)² / r_c`` with
        c = p(p+1)(p+2)/2."""
        p = self.p
        x = r / self.cutoff
        inside = x < 1.0
        xp1 = x ** (p - 1)
        xp = xp1 * x
        f = 1.0 + xp * (-0.5 * (p + 1) * (p + 2) + x * (p * (p + 2) - 0.5 * p * (p + 1) * x))
        one_minus = 1.0 - x
        df = (-0.5 * p * (p + 1) * (p + 2) / self.cutoff) * xp1 * one_minus * one_minus
        return f * inside, df * inside

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}"


class InnerSwitch(nn.Module):
    """``s(r) = u³ (10 − 15u + 6u²)``, ``u = (r/r0 − start) / (end − start)`` clipped to [0, 1]:
    0 below ``start·r0``, 1 above ``end·r0``, value and first two derivatives continuous.

    It switches a basis off where no data reach (atoms far closer than a bond), so the fitted
    many-body term cannot extrapolate there and the pair part's ZBL core decides alone.
    ``start`` and ``end`` are fractions of the pair's bond length r0.
    """

    def __init__(self, start: float, end: float):
        super().__init__()
        start, end = float(start), float(end)
        if not (0.0 <= start < end <= 2.0):
            raise ValueError(
                f"the inner switch needs 0 <= start < end <= 2 (fractions of r0), "
                f"got start={start}, end={end}"
            )
        self.start, self.end = start, end

    def with_derivative(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s(x) and ds/dx (n_edges,) at x = r/r0."""
        width = self.end - self.start
        u = ((s - self.start) / width).clamp(0.0, 1.0)
        value = u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)
        slope = 30.0 * u * u * (1.0 - u) * (1.0 - u) / width
        return value, slope

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class AgnesiTransform(nn.Module):
    """Maps distance r ∈ [0, r_c] to x ∈ [1, -1], resolving short bonds finely.

    ``y(r) = 1 / (1 + a s^q / (1 + s^(q-p)))`` with ``s = r / r0``; x is y rescaled so that
    x(0) = 1 and x(r_c) = -1. ``r0`` is per element pair (n_elements, n_elements), Å.
    """

    def __init__(self, r0: torch.Tensor, cutoff: float, p: int = 2, q: int = 4, a: float = 1.0):
        super().__init__()
        self.register_buffer("r0", torch.as_tensor(r0, dtype=torch.float64).clone())
        if int(p) != p or int(q) != q or not 1 <= p < q:
            raise ValueError(
                f"the transform's powers need integers 1 <= p < q, got p={p!r}, q={q!r}"
            )
        self.cutoff, self.p, self.q, self.a = float(cutoff), int(p), int(q), float(a)

    def _y_and_slope(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y(s) and dy/ds."""
        p, q = self.p, self.q
        s_qp1 = s ** (q - p - 1)
        s_qp = s_qp1 * s  # s^(q-p)
        s_q = s_qp * s**p
        den = 1.0 + s_qp
        y = 1.0 / (1.0 + self.a * s_q / den)
        # dg/ds of g = a s^q / den: a (q s^(q-1) den - s^q (q-p) s^(q-p-1)) / den²
        dg = self.a * (q * s_qp1 * s**p * den - (q - p) * s_q * s_qp1) / (den * den)
        return y, -dg * y * y

    def pair_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n_elements, n_elements) tables of 1/r0, the scale 2/(1 - y(r_c)) and the offset
        of the rescaling ``x = scale·y + offset``."""
        r0 = self.r0
        y_cut, _ = self._y_and_slope(self.cutoff / r0)
        scale = 2.0 / (1.0 - y_cut)
        return 1.0 / r0, scale, -scale * y_cut - 1.0

    def inv_r0(self, species_i: torch.Tensor, species_j: torch.Tensor) -> torch.Tensor:
        """1/r0 per edge (n_edges,), 1/Å (a scalar for one element)."""
        return self._pair_constants(species_i, species_j)[0]

    def _pair_constants(self, species_i: torch.Tensor, species_j: torch.Tensor):
        """Per edge: 1/r0, scale and offset, so no per-edge work is spent on constants."""
        tables = self.pair_tables()
        if self.r0.numel() == 1:  # one element: scalars broadcast, no gathers
            return tuple(t.reshape(()) for t in tables)
        return tuple(t[species_i, species_j] for t in tables)

    def forward(
        self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor
    ) -> torch.Tensor:
        return self.with_derivative(r, species_i, species_j)[0]

    def with_derivative(self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor):
        """x (n_edges,) and dx/dr (n_edges,), 1/Å."""
        inv_r0, scale, offset = self._pair_constants(species_i, species_j)
        y, dy = self._y_and_slope(r * inv_r0)
        return scale * y + offset, scale * dy * inv_r0

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}, q={self.q}, a={self.a}"


class ChebyshevBasis(nn.Module):
    """Chebyshev polynomials T_0 … T_{n-1} of x ∈ [-1, 1]: (n_edges,) → (n_edges, n)."""

    def __init__(self, n: int):
        super().__init__()
        if n < 1:
            raise ValueError(f"a Chebyshev basis needs n >= 1 functions, got {n}")
        self.n = int(n)
        self.register_buffer("k", torch.arange(self.n, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = [torch.ones_like(x), x]
        for _ in range(2, self.n):
            terms.append(2.0 * x * terms[-1] - terms[-2])
        return torch.stack(terms[: self.n], dim=-1)

    def with_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T (n_edges, n) and dT/dx = k U_{k-1} (n_edges, n), by the two recurrences."""
        two_x = 2.0 * x
        first, second = [torch.ones_like(x), x], [torch.ones_like(x), two_x]  # T_0, T_1; U_0, U_1
        for _ in range(2, self.n):
            first.append(two_x * first[-1] - first[-2])
            second.append(two_x * second[-1] - second[-2])
        t = torch.stack(first[: self.n], dim=-1)
        u = torch.stack(
            [torch.zeros_like(x)] + second[: self.n - 1], dim=-1
        )  # U_{k-1}, U_{-1} := 0
        return t, u * self.k.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"n={self.n}"


class RadialBasis(nn.Module):
    """``R_n(r) = T_{n-1}(x(r)) · f_cut(r) [· s_inner(r)]`` for n = 1 … n_max:
    (n_edges,) → (n_edges, n_max).

    ``inner``: (start, end) fractions of r0 of an :class:`InnerSwitch`, or ``None`` for none.
    """

    def __init__(
        self,
        n_max: int,
        cutoff: float,
        r0: torch.Tensor,
        envelope_p: int = 6,
        inner: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.transform = AgnesiTransform(r0, cutoff)
        self.polynomials = ChebyshevBasis(n_max)
        self.envelope = PolynomialEnvelope(cutoff, envelope_p)
        self.inner = InnerSwitch(*inner) if inner is not None else None
        self.n_max = int(n_max)

    def _envelope(self, r, species_i, species_j) -> tuple[torch.Tensor, torch.Tensor]:
        """f_cut·s_inner and its r-derivative (n_edges,)."""
        f, df = self.envelope.with_derivative(r)
        if self.inner is None:
            return f, df
        inv_r0 = self.transform.inv_r0(species_i, species_j)
        s, ds = self.inner.with_derivative(r * inv_r0)
        return f * s, df * s + f * ds * inv_r0

    def check_parameters(self, elements, prefix: str = "") -> None:
        """Check a loaded r0 as the constructor does (:func:`check_r0`), naming the tensor."""
        try:
            check_r0(self.transform.r0, elements)
        except ValueError as err:
            raise ValueError(f"tensor '{prefix}transform.r0': {err}") from None

    def forward(
        self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor
    ) -> torch.Tensor:
        x = self.transform(r, species_i, species_j)
        f, _ = self._envelope(r, species_i, species_j)
        return self.polynomials(x) * f[:, None]  # (n_edges, n_max)

    def with_derivative(self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor):
        """R (n_edges, n_max) and dR/dr (n_edges, n_max), in closed form."""
        x, dx = self.transform.with_derivative(r, species_i, species_j)
        t, dt = self.polynomials.with_derivative(x)
        f, df = self._envelope(r, species_i, species_j)
        return t * f[:, None], dt * (dx * f)[:, None] + t * df[:, None]

    def kernel_tables(self, dtype) -> RadialTables:
        """The constants the compiled kernels read (:class:`~mlff.kernels.radial.RadialTables`),
        floats in numpy ``dtype``."""
        transform, envelope = self.transform, self.envelope
        powers = {
            "q": transform.q,
            "q - p": transform.q - transform.p,
            "p": transform.p,
            "envelope p": envelope.p,
        }
        bad = {name: v for name, v in powers.items() if not 1 <= v <= MAX_KERNEL_POWER}
        if bad:  # the constructors refuse < 1; attributes set later are checked here
            raise ValueError(
                f"the compiled kernels take exponents from 1 to {MAX_KERNEL_POWER}, got {bad}; "
                "use backend='torch' for such a radial basis"
            )
        dtype = np.dtype(dtype)
        inv_r0, scale, offset = (
            np.ascontiguousarray(t.detach().cpu().double().numpy(), dtype=dtype)
            for t in transform.pair_tables()
        )
        return RadialTables(
            inv_r0,
            scale,
            offset,
            transform.p,
            transform.q,
            dtype.type(transform.a),
            dtype.type(envelope.cutoff),
            envelope.p,
            dtype.type(self.inner.start if self.inner is not None else 0.0),
            dtype.type(self.inner.end if self.inner is not None else 0.0),
        )
