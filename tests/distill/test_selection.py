import pytest
from ase.build import bulk
from emt_data import emt_cu_dataset

from mlff import ACEModel, OneBody, PairModel, Stack
from mlff.distill.selection import select_by_committee
from mlff.fitting import BLR, estimate_e0, fit
from mlff.uncertainty import Committee


@pytest.fixture(scope="module")
def fitted():
    train = emt_cu_dataset(seed=0, n_each=4)
    model = Stack(
        [
            OneBody(estimate_e0(train)),
            PairModel(["Cu"], cutoff=5.0, n_max=6, repulsion=True),
            ACEModel(["Cu"], cutoff=5.0, n_max=6, max_degree={1: 6, 2: 9, 3: 9}),
        ]
    )
    result = fit(model, train, solver=BLR())
    return result.model, Committee.from_fit(result, train, size=8)


def _candidate(scale: float, rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=3.61 * scale, cubic=True).repeat((2, 2, 2))
    atoms.rattle(rattle, seed=seed)
    return atoms, "test", {"scale": scale, "seed": seed}


def test_most_uncertain_candidates_come_first(fitted):
    candidates = [_candidate(1.0, 0.05, k) for k in range(4)] + [
        _candidate(0.86, 0.05, 10),
        _candidate(1.18, 0.05, 11),
    ]
    picked = select_by_committee(candidates, *fitted, n_select=2, min_distance=0.0)
    assert {c[2]["scale"] for c, _ in picked} == {0.86, 1.18}
    assert picked[0][1] >= picked[1][1] > 0


def test_diversity_guard_skips_near_duplicates(fitted):
    far = _candidate(0.86, 0.05, 10)
    twin = far[0].copy()
    twin.positions += 1e-4
    candidates = [far, (twin, "test", {"scale": 0.86, "seed": "twin"}), _candidate(1.0, 0.1, 3)]
    picked = select_by_committee(candidates, *fitted, n_select=2, min_distance=0.01)
    seeds = [c[2]["seed"] for c, _ in picked]
    assert len(picked) == 2 and not {10, "twin"} <= set(seeds)
    assert select_by_committee(candidates, *fitted, n_select=0) == []
    with pytest.raises(ValueError, match="n_select"):
        select_by_committee(candidates, *fitted, n_select=-1)


def test_every_config_type_gets_picks_in_turn(fitted):
    """Strained frames are far more uncertain than the near-crystal ones; ranked by grade
    alone they take every pick, stratified each type takes its best in turn."""
    hot = [(a, "strained", m) for a, _, m in (_candidate(s, 0.05, 20) for s in (0.86, 0.9, 1.18))]
    near = [(a, "md_300K", m) for a, _, m in (_candidate(1.0, 0.05, k) for k in range(3))]
    candidates = hot + near
    by_grade = select_by_committee(candidates, *fitted, n_select=3, stratify=False)
    assert [c[1] for c, _ in by_grade] == ["strained"] * 3
    picked = select_by_committee(candidates, *fitted, n_select=4)
    assert [c[1] for c, _ in picked] == ["strained", "md_300K", "strained", "md_300K"]
    assert picked[0][1] > picked[1][1]  # the stratum with the highest grade goes first
