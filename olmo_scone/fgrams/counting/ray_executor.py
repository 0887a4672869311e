"""Running a count's tasks on a Ray cluster (Ray Core tasks), or on a local Ray runtime.

Each task's outputs live in Ray's object store: a pass's partial counts stay on the nodes that made
them until the merge of their partition fetches them, and a published index is one shared-memory copy
per node that every worker there reads without copying. A task whose worker dies is re-run by Ray
(``max_retries``); an output lost with its node is rebuilt from its lineage. The driver receives only
each task's small last output (statistics, histograms, the final winners).
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import SconeError, fail
from ...progress import progress

#: times Ray re-runs a task whose worker process or node died
MAX_RETRIES = 4


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return True  # not host:port (e.g. a ray:// URI): let Ray judge
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def _call(fn: Callable, *args: Any):
    from ...malloc import keep_large_allocations

    keep_large_allocations()  # once per worker process: counting frees and re-allocates big arrays
    result = fn(*args)  # a tuple, one element per declared return
    return result if len(result) > 1 else result[0]


class RayExecutor:
    """Tasks on a Ray cluster: ``address`` None starts a local runtime with ``processes`` CPUs
    (0: all cores) and an object store of ``object_store_gb``; "auto" or host:port joins a cluster."""

    name = "ray"

    def __init__(
        self, address: Optional[str], processes: int = 0, object_store_gb: Optional[float] = None
    ):
        import ray

        if address not in (None, "auto", "local") and not _reachable(address):
            fail(
                f"--ray {address}: no Ray cluster answers there (start one with `ray start --head`, or pass --ray auto)"
            )
        kwargs: Dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        if address in (None, "local"):
            from ...resources import cap_processes

            kwargs.update(address="local", num_cpus=cap_processes(processes))
            if object_store_gb:
                kwargs["object_store_memory"] = int(object_store_gb * 2**30)
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as e:
            fail(f"--ray {address}: cannot connect to a Ray cluster ({str(e).splitlines()[0]})")
        self._ray = ray
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
        if not nodes:
            self.close()
            fail(f"--ray {address or 'local'}: the cluster has no node with a CPU")
        self.nodes = len(nodes)
        self.cpus_per_node = int(max(n["Resources"]["CPU"] for n in nodes))
        self.cpus_total = int(sum(n["Resources"]["CPU"] for n in nodes))
        self._task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_call)

    def map(
        self, fn: Callable, calls: Sequence[Sequence[Any]], num_big: int = 0, desc: str = ""
    ) -> Tuple[List[List[Any]], List[Any]]:
        """Submit ``fn(*args)`` for each of ``calls`` (object refs among the args are resolved by Ray);
        wait for all; returns each call's ``num_big`` output refs and its last output's value."""
        ray = self._ray
        refs = []
        for args in calls:
            r = self._task.options(num_returns=num_big + 1, name=fn.__name__).remote(fn, *args)
            refs.append(list(r) if num_big else [r])
        last = {r[-1]: i for i, r in enumerate(refs)}
        smalls: List[Any] = [None] * len(refs)
        pending = [r[-1] for r in refs]
        with progress(total=len(pending), desc=desc, unit="task", disable=not desc) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                for ref in done:
                    smalls[last[ref]] = self._get(ref, fn)
                bar.update(len(done))
        return [r[:-1] for r in refs], smalls

    def _get(self, ref, fn: Callable) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, SconeError):
                raise SconeError(str(cause)) from None
            raise
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
        ) as e:
            fail(
                f"Ray task {fn.__name__} failed {MAX_RETRIES + 1} times ({type(e).__name__}): "
                "its workers or nodes kept dying (out of memory? see `ray status` and the raylet logs)"
            )

    def put(self, value: Any) -> Any:
        """``value`` in the object store, once; tasks given the ref read it there."""
        return self._ray.put(value)

    def free(self, handles: Sequence[Any]) -> None:
        """Outputs no longer needed: dropping the refs lets Ray free them."""

    def close(self) -> None:
        self._ray.shutdown()
