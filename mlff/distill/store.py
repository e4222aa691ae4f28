"""The labelled store: teacher labels in a real SQLite database (ASE db).

Every label is written (and committed) the moment the teacher returns it, with the teacher's
name, a structure hash and the generator's metadata. A structure whose hash is already in the
store is never labelled again, so rerunning a killed run resumes where it stopped and loses at
most the configuration that was in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

__all__ = ["structure_hash", "LabelStore"]


def structure_hash(atoms: Atoms, decimals: int = 6) -> str:
    """SHA-256 of atomic numbers, positions (rounded to 10^-decimals Å), cell and pbc."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        rounded = np.round(np.asarray(array, dtype=np.float64), decimals) + 0.0  # no negative zeros
        digest.update(np.ascontiguousarray(rounded).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.uint8).tobytes())
    return digest.hexdigest()


class LabelStore:
    """Teacher labels in an ASE SQLite database at ``path``.

    Rows carry key-value pairs ``hash``, ``teacher`` and ``config_type``, and the generator's
    metadata as JSON in ``data["meta"]``.
    """

    def __init__(self, path: str | os.PathLike, teacher: str):
        if not teacher:
            raise ValueError("a label store needs the teacher's name")
        self.path = os.fspath(path)
        self.teacher = str(teacher)
        # ASE's lock file has no expiry: a writer killed while holding it would block every
        # later run forever. SQLite's own locks die with their process, and each write is one
        # transaction, so they alone keep the store whole.
        self.db = connect(self.path, type="db", append=True, use_lock_file=False)

    def __len__(self) -> int:
        return self.db.count(teacher=self.teacher)

    def __contains__(self, atoms_or_hash) -> bool:
        key = atoms_or_hash if isinstance(atoms_or_hash, str) else structure_hash(atoms_or_hash)
        return self.db.count(hash=key, teacher=self.teacher) > 0

    def add(self, atoms: Atoms, config_type: str, meta: Mapping[str, Any] | None = None) -> bool:
        """Store ``atoms`` with the labels its calculator holds; False if already stored."""
        key = structure_hash(atoms)
        if key in self:
            return False
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        if "energy" not in results or "forces" not in results:
            raise ValueError("atoms must carry teacher results (energy and forces) to be stored")
        labelled = atoms.copy()
        extra = {"stress": results["stress"]} if "stress" in results and atoms.pbc.all() else {}
        labelled.calc = SinglePointCalculator(
            labelled, energy=results["energy"], forces=results["forces"], **extra
        )
        self.db.write(
            labelled,
            key_value_pairs={"hash": key, "teacher": self.teacher, "config_type": str(config_type)},
            data={"meta": json.dumps(dict(meta or {}), default=str)},
        )
        return True

    def label(
        self,
        structures: Iterable[tuple[Atoms, str, Mapping[str, Any]]],
        teacher,
        progress: bool = False,
        budget: int | None = None,
        batch: int = 1,
    ) -> int:
        """Label and store each (atoms, config_type, meta) not yet stored; returns how many
        structures the teacher labelled. Each label is committed on its own before the next
        teacher call starts; with ``batch`` > 1 the teacher (one with ``label_batch``, e.g.
        :class:`~mlff.distill.teachers.TorchSimTeacher`) labels up to ``batch`` structures per
        call, so a kill loses at most the batch in flight, and nothing is stored twice."""
        from tqdm.auto import tqdm

        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch = {batch!r}; accepted an integer >= 1")
        if batch > 1 and not hasattr(teacher, "label_batch"):
            raise ValueError(
                f"batch = {batch} needs a teacher that labels batches (a torch-sim model, "
                f"mlff.distill.TorchSimTeacher); {type(teacher).__name__} labels one at a time"
            )
        items = list(structures)
        calls = 0
        pending: list = []
        bar = tqdm(total=len(items), desc="labelling", unit="config", disable=not progress)
        for atoms, config_type, meta in items:
            bar.update(1)
            if budget is not None and calls + len(pending) >= budget:
                break
            key = structure_hash(atoms)
            if key in self or any(key == waiting for waiting, *_ in pending):
                continue
            pending.append((key, atoms, config_type, meta))
            if len(pending) == batch:
                calls += self._label_now(pending, teacher, batch)
                pending = []
        calls += self._label_now(pending, teacher, batch)
        bar.close()
        return calls

    def _label_now(self, pending: list, teacher, batch: int) -> int:
        """Label ``pending`` (hash, atoms, config_type, meta) and store each label."""
        if not pending:
            return 0
        if batch > 1:
            labels = teacher.label_batch([atoms for _, atoms, _, _ in pending])
        else:
            labels = []
            for _, atoms, _, _ in pending:
                probe = atoms.copy()
                probe.calc = teacher
                result = {"energy": probe.get_potential_energy(), "forces": probe.get_forces()}
                if probe.pbc.all():
                    result["stress"] = probe.get_stress()
                labels.append(result)
        for (_, atoms, config_type, meta), result in zip(pending, labels, strict=True):
            probe = atoms.copy()
            keep = {k: v for k, v in result.items() if k in ("energy", "forces", "stress")}
            probe.calc = SinglePointCalculator(probe, **keep)
            self.add(probe, config_type, meta)
        return len(pending)

    def configurations(self, config_type: str | None = None) -> list[Atoms]:
        """The stored labelled structures, each with a SinglePointCalculator attached and
        ``info["config_type"]`` set."""
        selection = {"teacher": self.teacher}
        if config_type is not None:
            selection["config_type"] = config_type
        out = []
        for row in self.db.select(**selection):
            atoms = row.toatoms()
            atoms.info["config_type"] = row.config_type
            atoms.info["meta"] = json.loads(row.data.get("meta", "{}"))
            out.append(atoms)
        return out
