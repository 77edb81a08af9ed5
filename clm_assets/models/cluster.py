"""Fit models on an existing Ray cluster: each fit one Ray task, the bytes back to the caller.

:class:`RayCluster` connects this process to a cluster someone else started (``ray start``,
KubeRay, ...) and never starts one: an address that does not answer is an error, not a
reason to train locally (invariant 2: no stand-ins). :meth:`RayCluster.fit_all` sends each
:class:`~clm_assets.models.fitting.FitJob` as a task of 1 CPU, spread over the nodes, with
its frame in the object store (one copy per distinct frame), and returns the results in
job order. Only bytes come back: the step that stores them stays the one DuckDB writer.

The tasks run :func:`~clm_assets.models.fitting.run_fit`, importing ``clm_assets`` on the
workers, so every node must run this same environment with ``clm`` installed (the project's
venv, installed editable, on every node). No ``runtime_env`` ships the code: packaging the
working tree per job would hide a node that runs other library versions, and the bytes,
hence the model's version, depend on those (the card records them).

Token authentication (on by default for clusters Ray starts itself since 2.59) is Ray's own:
this process must hold the cluster's token as Ray reads it, ``RAY_AUTH_MODE=token`` with the
token in ``RAY_AUTH_TOKEN``, or in a file named by ``RAY_AUTH_TOKEN_PATH``, or in
``~/.ray/auth_token``. Nothing here reads, writes or disables it; a connection refused for
want of a token is a :class:`~clm_assets.models.base.ModelError` that says what to set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from clm_assets.models.base import ModelError
from clm_assets.models.fitting import FitJob, FitResult, run_fit
from clm_assets.models.ray_session import refresh_auth

AUTH_HINT = (
    "set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, or in a file named by "
    "RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token), in this process's environment"
)
"""What a driver needs for a cluster with token authentication (Ray reads them itself)."""

_AUTH_REFUSAL = re.compile(r"AuthenticationError: (.+?)(?= Ensure that|$)", re.MULTILINE)
"""Ray's reason in an ``AuthenticationError``, without its generic advice."""


class RayCluster:
    """A connection of this process to the existing Ray cluster at ``address``
    (``host:port`` of its GCS): ``with RayCluster(address) as cluster: cluster.fit_all(jobs)``.

    It refuses to connect when Ray is already initialized in this process: it would
    otherwise share, and on exit shut down, a session that is not its own.
    """

    def __init__(self, address: str) -> None:
        if not address or address in ("local", "auto") or address.startswith("ray://"):
            raise ModelError(
                f"Ray cluster address must be the host:port of an existing cluster's GCS, "
                f"got {address!r}"
            )
        self.address = address

    def __enter__(self) -> RayCluster:
        import ray

        if ray.is_initialized():
            raise ModelError(
                f"Ray is already initialized in this process; RayCluster({self.address!r}) "
                "connects on its own and will not share or shut down another session"
            )
        refresh_auth()  # the environment as it is now decides, not a token Ray cached
        try:
            ray.init(
                address=self.address,
                log_to_driver=False,  # the fits' own logs stay on the nodes
                logging_level=logging.ERROR,
                ignore_reinit_error=False,
            )
        except Exception as exc:
            ray.shutdown()  # a half-made connection must not block the next attempt
            raise ModelError(_connect_error(self.address, exc)) from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import ray

        ray.shutdown()  # ours: __enter__ refused when Ray was already up

    def fit_all(self, jobs: Sequence[FitJob]) -> list[FitResult]:
        """Fit every job as a Ray task and return the results in job order.

        A task waits for a free CPU (an autoscaling cluster may add a node for it). The
        first job to fail cancels the others and raises ``ModelError`` naming its label;
        nothing is fitted locally instead.
        """
        import ray

        if not ray.is_initialized():
            raise ModelError("RayCluster.fit_all needs the connection: use it inside `with`")
        task = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_fit_task)
        frames: dict[int, Any] = {}  # id(frame) -> ObjectRef: one copy per distinct frame
        position: dict[Any, int] = {}  # ObjectRef -> index of its job
        for i, job in enumerate(jobs):
            if id(job.frame) not in frames:
                frames[id(job.frame)] = ray.put(job.frame)
            ref = task.options(name=f"fit {job.label}").remote(
                job.label, job.family, job.params, job.seed, frames[id(job.frame)], job.horizon
            )
            position[ref] = i
        results: dict[int, FitResult] = {}
        pending = list(position)
        while pending:  # in the order they finish, so that a failure is raised at once
            done, pending = ray.wait(pending, num_returns=1)
            job = jobs[position[done[0]]]
            try:
                results[position[done[0]]] = ray.get(done[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref)
                raise self._failure(job, exc) from exc
        return [results[i] for i in range(len(jobs))]

    def _failure(self, job: FitJob, exc: Exception) -> ModelError:
        """The error to raise for a failed task: the fit's own ``ModelError`` (its message
        names the label), or what went wrong on the cluster, naming the label."""
        from ray.exceptions import RayTaskError

        cause = exc.cause if isinstance(exc, RayTaskError) else exc
        if isinstance(cause, ModelError):
            return ModelError(str(cause))
        return ModelError(
            f"{job.label}: the fit failed on the Ray cluster at {self.address}: "
            f"{type(cause).__name__}: {_first_line(cause)}"
        )


def _fit_task(
    label: str, family: str, params: dict[str, Any], seed: int, frame: Any, horizon: int
) -> FitResult:
    """The Ray task: fit one job on this worker and say which node it ran on."""
    import ray

    context = ray.get_runtime_context()
    # the node's address as the cluster records it (``ray.nodes()``' NodeManagerAddress)
    job = FitJob(label, family, params, seed, frame, horizon)
    return run_fit(job, node=context.get_node_id(), node_ip=context.worker.node_ip_address)


def _connect_error(address: str, exc: BaseException) -> str:
    """What failed and what to set. Ray retries a refused token for ~20 s and then reports
    it only as the text of a ``RuntimeError`` under a ``ConnectionError`` (or raises an
    ``AuthenticationError`` when token mode is on and no token is found), so the whole
    chain is searched for Ray's reason."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        refused = _AUTH_REFUSAL.search(f"{type(error).__name__}: {error}")
        if refused:
            return (
                f"the Ray cluster at {address} refused this process: its authentication "
                f"token is missing or wrong ({refused.group(1).strip()}); {AUTH_HINT}"
            )
    return (
        f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}; is it running "
        f"there? If it uses token authentication, {AUTH_HINT}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
