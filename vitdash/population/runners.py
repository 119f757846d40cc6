"""Auditing many members: in this process, in spawned worker processes, or as Ray tasks; results stream back
as they finish, and a worker holds one checkpoint at a time."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from vitdash.common.compute import init_worker
from vitdash.errors import VitdashError
from vitdash.population.discover import ZooModel
from vitdash.population.member import ModelAudit, audit_model


def _local(models: list[ZooModel], workers: int) -> Iterator[ModelAudit]:
    if workers == 1:
        for m in models:
            yield audit_model(m)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=init_worker, initargs=(workers,))
    try:
        futures = [pool.submit(audit_model, m) for m in models]
        for f in as_completed(futures):
            yield f.result()
    except BrokenProcessPool:
        raise VitdashError("a worker process died (killed for memory?): try fewer --workers") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise VitdashError("--ray needs the 'ray' package, which is not installed: pip install ray "
                           "(or run without --ray to use local worker processes)") from None
    return ray


def _ray(models: list[ZooModel], address: str) -> Iterator[ModelAudit]:
    """One Ray task per model (1 CPU each) on an existing cluster; an already-connected session is reused.

    The checkpoints are read by the tasks, so they must lie on a filesystem every node sees. vitdash
    itself travels with the job (`py_modules`) when this function connects, so nodes need not install it.
    """
    ray = _import_ray()
    package = Path(__file__).resolve().parents[1]  # vitdash/
    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(package)]}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise VitdashError(f"could not connect to the Ray cluster at {address!r}: {str(e).splitlines()[0]} "
                               "(start one with `ray start --head`, or pass its address)") from None
        task = ray.remote(num_cpus=1)(audit_model)
    else:  # the caller's session: make vitdash importable on its workers from this checkout
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)}
        task = ray.remote(num_cpus=1)(audit_model).options(runtime_env={"env_vars": env})
    pending = [task.remote(m) for m in models]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as e:  # the task itself died: a worker lost, vitdash not importable
                raise VitdashError(f"a Ray task failed: {str(e).strip().splitlines()[-1][:300]}") from None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if owns:
            ray.shutdown()


def iter_audit(models: Iterable[ZooModel], *, workers: int = 1, ray: str | None = None) -> Iterator[ModelAudit]:
    """Audit every model, yielding each as it finishes (completion order, not input order).

    `workers=1` runs here; more spawn that many processes; `ray` (an address or 'auto') sends one
    task per model to a Ray cluster instead.
    """
    models = list(models)
    if workers < 1:
        raise VitdashError(f"workers must be at least 1 (got {workers})")
    if ray:
        yield from _ray(models, ray)
    else:
        yield from _local(models, min(workers, max(len(models), 1)))
