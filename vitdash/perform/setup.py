"""What a run of a checkpoint starts from when the user has not said otherwise: its architecture, its own
preprocessing, the data to check it on, and which check suits it. The page shows these as its defaults and
passes the architecture on, so nothing is read twice."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vitdash.data.datasets import DIGITS, discover, group_coarse, suggested_data
from vitdash.data.labels import map_labels
from vitdash.data.samples import sample_dir
from vitdash.data.transforms import Preprocessing
from vitdash.errors import VitdashError
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.domain import domain_check
from vitdash.perform.estimate import RunEstimate, estimate_run


@dataclass(frozen=True)
class RunDefaults:
    arch: ArchSpec
    preprocessing: Preprocessing
    data: str  # `suggested_data`: the sample folder for colour models, else the built-in digits

    @property
    def probe(self) -> bool:
        """A model without a classification head can only be probed (few-shot), not scored."""
        return not self.arch.num_classes

    def coarse(self, data: str) -> bool:
        """Group ImageNet classes into coarse categories for the suggested sample folder: it holds one image per
        class, too few for a probe per class."""
        return data.strip() == self.data and self.data != DIGITS


def run_defaults(ckpt: Checkpoint) -> RunDefaults:
    arch = infer_architecture(ckpt)
    return RunDefaults(arch, resolve_preprocessing(ckpt, arch), suggested_data(arch.in_chans, sample_dir()))


@dataclass
class RunPreview:
    """What a run will be, said before Run: how long it takes at each resolution (timed on one batch), and for
    the own-head check whether the data is the model's domain at all."""

    estimate: RunEstimate | None
    off_domain: str = ""
    error: str = ""  # the data cannot be read (the run says so too)


def preview_run(ckpt: Checkpoint, arch: ArchSpec, data: str, model: nn.Module, *, probe: bool, coarse: bool = False,
                limit: int | None = None) -> RunPreview:
    """Time one batch of `data` (the probe runs the model and its random twin) and, for the own head, check the
    data's domain; a data folder that cannot be read gives its reason instead."""
    try:
        ds = discover(data)
        ds = (group_coarse(ds) if coarse else ds).limited(limit)
        why = ""
        if not probe and arch.num_classes:
            found = domain_check(ckpt, ds, arch.num_classes, arch.img_size, arch.in_chans,
                                 map_labels(ds, ckpt.metadata, arch.num_classes))
            why = found.message
        return RunPreview(estimate_run(ckpt, arch, ds, model, models=2 if probe else 1), why)
    except VitdashError as e:
        return RunPreview(None, error=str(e))
