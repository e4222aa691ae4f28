"""``DistilledCalculator``: load a distilled student by name or path, as a drop-in ASE
calculator."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mlff.calculators import SiteCalculator
from mlff.io import load_checkpoint, load_model, resolve_checkpoint

__all__ = ["DistilledCalculator", "models_dir"]

MODELS_ENV = "MLFF_MODELS_DIR"


def models_dir() -> Path:
    """Where named students live: ``$MLFF_MODELS_DIR``, else ``~/.local/share/mlff/models``."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "mlff" / "models"


class DistilledCalculator(SiteCalculator):
    """A distilled student with the keyword shape of the teachers' calculators.

    ``DistilledCalculator(model="si-sevennet")`` loads ``<models_dir()>/si-sevennet`` (a run
    directory or ``.json``); ``checkpoint_path=`` names a run directory or a ``student.json``
    directly and wins over ``model``.

    ``uncertainty=True`` loads the committee saved with the checkpoint, so the calculator also
    reports ``energies_std``, ``energy_std``, ``forces_std`` and ``extrapolation_grade`` (only
    when asked; see :class:`~mlff.SiteCalculator`) and can run under
    :class:`~mlff.md.ExtrapolationGuard`. A checkpoint without one is refused (ValueError).
    """

    def __init__(
        self,
        model: str | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float64,
        uncertainty: bool = False,
        **kwargs,
    ):
        if not isinstance(uncertainty, bool):
            raise ValueError(f"uncertainty must be True or False, got {uncertainty!r}")
        if uncertainty and kwargs.get("committee") is not None:
            raise ValueError(
                "give either uncertainty=True (the checkpoint's committee) or committee=, not both"
            )
        if checkpoint_path is None:
            if not model:
                raise ValueError(
                    "give model=NAME (looked up in the models directory) or checkpoint_path=PATH"
                )
            candidate = models_dir() / model
            try:
                checkpoint_path = resolve_checkpoint(candidate)
            except FileNotFoundError:
                known = (
                    sorted(
                        p.stem if p.suffix == ".json" else p.name for p in models_dir().glob("*")
                    )
                    if models_dir().is_dir()
                    else []
                )
                raise FileNotFoundError(
                    f"no student named {model!r} in {models_dir()} "
                    f"(set ${MODELS_ENV} to change it); "
                    f"available: {', '.join(known) or 'none'}"
                ) from None
        json_path = resolve_checkpoint(checkpoint_path)
        if not uncertainty:  # the committee is not read: a plain MD run does not depend on it
            student, metadata = load_model(json_path)
        else:
            student, metadata, committee = load_checkpoint(json_path)
            if committee is None:
                raise ValueError(
                    f"checkpoint {json_path} has no committee, so it cannot report "
                    "extrapolation_grade or energies_std. Save the student with one: "
                    "save_model(model, path, committee=Committee.from_fit(result, train)) "
                    "after a BLR fit (mlff.uncertainty), or rerun the distillation; or build "
                    "the calculator with uncertainty=False"
                )
            kwargs["committee"] = committee
        super().__init__(student, device=device, dtype=dtype, **kwargs)
        self.metadata = metadata
        self.checkpoint_path = json_path
