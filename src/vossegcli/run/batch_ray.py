"""``vosseg batch --ray``: the same jobs on a Ray cluster (or a local Ray instance).

Why Ray actors and not Ray Data: a job is a whole video — minutes of work with side effects (its
mask folder on a shared file system), widely different lengths, and a small result record. An
:class:`ray.util.ActorPool` of long-lived actors gives exactly what is needed: each actor loads its
engines once (the per-process cache of :func:`vossegcli.run.batch.run_job`), takes the next video
when it finishes one (load balancing across unequal videos), and returns one record per video.
Ray Data's block-oriented streaming would add serialization of inputs and a dataset to
materialize for no gain at this granularity.

Each actor asks Ray for ``threads`` CPUs (its torch thread count) and, when the cluster has GPUs
and the device is not ``cpu``, one GPU. Outputs go to the paths the jobs name: on a cluster these
must be on a file system every node sees. Ray is optional: ``pip install "vosseg[ray]"``.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from vossegcli.errors import VossegError
from vossegcli.run.batch import BatchReport, Job, JobResult, run_job


class _Worker:
    """One Ray actor: a process with its own engines, running jobs one after another."""

    def __init__(self, threads: int, device: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.device = device

    def run(self, job: Job) -> JobResult:
        return run_job(job, self.device)


def run_batch_ray(
    jobs: list[Job],
    bad: list[tuple[Job, str]] = (),
    *,
    address: str = "local",
    workers: int = 1,
    device: str = "auto",
    threads: int = 0,
    on_result: Callable[[JobResult], None] | None = None,
) -> BatchReport:
    """Run checked ``jobs`` on ``workers`` Ray actors with ``threads`` torch threads each (0: the
    cluster's CPUs // actors). ``address``: "local" starts a Ray instance in
    this process (stopped at the end); "auto" joins the running cluster; or a cluster address
    (``ray://head:10001``, ``head:6379``)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise VossegError('--ray needs Ray, an optional extra: pip install "vosseg[ray]" (or pip install ray)') from None
    start = time.perf_counter()
    results = [JobResult(job.row, job.input, job.out, "failed", error=problem, exit_status=2) for job, problem in bad]
    for r in results:
        if on_result:
            on_result(r)
    local = address in (None, "", "local")
    try:
        if local:
            ray.init(include_dashboard=False, log_to_driver=False, num_cpus=os.cpu_count() or 1)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as error:  # no cluster at that address, a version mismatch, ...
        raise VossegError(f"--ray {address}: cannot connect to Ray ({str(error).splitlines()[0]}); start one with "
                          "`ray start --head` or use --ray local") from None
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and device != "cpu"
        n = max(1, min(workers, gpus) if use_gpu else workers)
        share = max(1, int(resources.get("CPU", 1)) // n)  # what each actor may reserve: all n start
        threads = threads or share
        actor = ray.remote(num_cpus=min(threads, share), num_gpus=1 if use_gpu else 0)(_Worker)
        pool = ActorPool([actor.remote(threads, "cuda" if use_gpu else device) for _ in range(n)])
        for result in pool.map_unordered(lambda a, job: a.run.remote(job), list(jobs)):
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        if local:
            ray.shutdown()
    return BatchReport(results, n, time.perf_counter() - start)
