"""What a run of a checkpoint starts from when the user has not said otherwise: its architecture, its own
preprocessing, the data to check it on, and which check suits it. The page shows these as its defaults and
passes the architecture on, so nothing is read twice."""
from __future__ import annotations

from dataclasses import dataclass

from vitdash.data.datasets import DIGITS, suggested_data
from vitdash.data.samples import sample_dir
from vitdash.data.transforms import Preprocessing
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint


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
