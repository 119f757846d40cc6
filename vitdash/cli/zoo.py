"""`python -m vitdash zoo DIR [--workers N] [--ray ADDRESS] [--json]`: audit a population of checkpoints."""
from __future__ import annotations

import sys

from vitdash.cli.common import add_json_flag, emit
from vitdash.population.discover import discover
from vitdash.population.zoo import audit_zoo

HELP = "audit a population: a model zoo (pretraining/, finetuning/<parent>/) or any folder of checkpoints"


def add_arguments(parser) -> None:
    parser.add_argument("dir", help="the population's folder")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run as Ray tasks on an existing cluster ('auto' finds "
                                                           "a local one); the folder must be visible to every node")
    parser.add_argument("--target", help="result.json metric to predict (default: the test/validation accuracy)")
    add_json_flag(parser)


def _summary(report) -> str:
    lines = [f"{len(report.models)} models in {report.root} ({report.layout} layout), audited in "
             f"{report.seconds:.1f} s ({report.backend})"]
    factors = report.varying_factors[:4]
    for a in report.models:
        if a.error:
            lines.append(f"  {a.model.name}: error: {a.error}")
            continue
        s = a.summary()
        parts = [f"{k}={a.model.factors.get(k)}" for k in factors]
        if report.target and report.target in a.model.result:
            parts.append(f"{report.target}={a.model.result[report.target]:.4g}")
        parts.append(f"verdict {s['verdict']}")
        for key in ("dist_parent", "dist_init"):
            if s.get(key) is not None:
                parts.append(f"{key} {s[key]:.3g}")
        lines.append(f"  {a.model.name}: " + ", ".join(parts))
    p = report.accuracy_prediction
    if p is not None:
        extra = f", generating factors alone {p.factors_r2:.3f}" if p.factors_r2 is not None else ""
        lines.append(f"predicting {p.target} of the {p.n_models} {p.group or 'models'} models from their weights: "
                     f"R^2 {p.r2:.3f} (baseline, the mean: {p.baseline_r2:.3f}{extra}); {p.method}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def run(args) -> int:
    from tqdm import tqdm


    population = discover(args.dir)
    with tqdm(total=len(population.models), unit="model", file=sys.stderr, desc="auditing") as bar:
        def progress(p):
            bar.set_postfix_str(p.item.model.name[-40:], refresh=False)
            bar.update(1)

        report = audit_zoo(population, workers=args.workers, ray=args.ray, target=args.target, progress=progress)
    emit(report.to_dict(), args, _summary(report))
    return 0
