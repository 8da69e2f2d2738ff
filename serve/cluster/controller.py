"""The controller: which workers are alive, which models they serve, and where to send a request.

Workers register (models, address, capacity, context length) and then heartbeat with their
queue length. A worker silent for ``heartbeat_expiry`` seconds is dropped, and so is one that a
client reports unreachable; a heartbeat from a worker the controller does not know (after an
expiry or a controller restart) is answered ``known: false`` so the worker registers again.
Dispatch picks the worker with the shortest queue relative to its capacity (counting requests
dispatched since its last heartbeat), or a capacity-weighted lottery. With a worker secret,
every route but ``/health`` needs it (``Authorization: Bearer SECRET``): registering, heartbeats,
and also dispatch, status and failure reports, which would otherwise let anyone map the workers
or take them out of rotation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request

from serve.auth import require_worker_secret
from serve.body_limit import install_body_limit
from serve.cluster.protocol import (
    ControllerStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    ListModelsResponse,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ReportFailureRequest,
    WorkerAddressRequest,
    WorkerAddressResponse,
    WorkerState,
)
from serve.config import DISPATCH_METHODS, ControllerConfig
from serve.error_handlers import install_error_handlers
from serve.errors import ModelNotFoundError, NoWorkerError


@dataclass
class WorkerRecord:
    address: str
    model_names: list[str]
    capacity: int
    context_length: int
    queue_length: int
    last_seen: float
    dispatched: int = 0  # requests sent since the last heartbeat reported the queue

    def load(self) -> float:
        return (self.queue_length + self.dispatched) / self.capacity


class Controller:
    """Worker registry and dispatcher; ``clock`` and ``rng`` are injectable for tests."""

    def __init__(
        self,
        *,
        dispatch: str = "shortest_queue",
        heartbeat_expiry: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if dispatch not in DISPATCH_METHODS:
            raise ValueError(f"dispatch must be one of {DISPATCH_METHODS}, got {dispatch!r}")
        self.dispatch = dispatch
        self.heartbeat_expiry = heartbeat_expiry
        self.clock = clock
        self.rng = rng or random.Random()
        self.workers: dict[str, WorkerRecord] = {}
        self.known_models: set[str] = set()  # ever served: 503 (not 404) once workers are gone

    def register(self, req: RegisterWorkerRequest) -> RegisterWorkerResponse:
        self.workers[req.worker_address] = WorkerRecord(
            req.worker_address,
            list(req.model_names),
            req.capacity,
            req.context_length,
            req.queue_length,
            self.clock(),
        )
        self.known_models.update(req.model_names)
        return RegisterWorkerResponse(heartbeat_interval=max(0.5, self.heartbeat_expiry / 3))

    def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse:
        self._expire()
        worker = self.workers.get(req.worker_address)
        if worker is None:
            return HeartbeatResponse(known=False)
        worker.queue_length, worker.dispatched, worker.last_seen = req.queue_length, 0, self.clock()
        return HeartbeatResponse(known=True)

    def remove(self, address: str) -> None:
        self.workers.pop(address, None)

    def list_models(self) -> list[str]:
        self._expire()
        return sorted({name for w in self.workers.values() for name in w.model_names})

    def pick(self, model: str) -> WorkerRecord:
        """The worker to send a request for ``model`` to; counts the dispatch."""
        self._expire()
        candidates = [w for w in self.workers.values() if model in w.model_names]
        if not candidates:
            if model in self.known_models:
                raise NoWorkerError(f"no live worker serves model {model!r} right now; retry soon")
            served = ", ".join(self.list_models()) or "none"
            raise ModelNotFoundError(
                f"The model {model!r} does not exist; models served: {served}", param="model"
            )
        if self.dispatch == "lottery":
            worker = self.rng.choices(candidates, weights=[w.capacity for w in candidates])[0]
        else:
            worker = min(candidates, key=lambda w: (w.load(), self.rng.random()))
        worker.dispatched += 1
        return worker

    def status(self) -> ControllerStatus:
        self._expire()
        now = self.clock()
        workers = [
            WorkerState(
                address=w.address,
                model_names=w.model_names,
                capacity=w.capacity,
                context_length=w.context_length,
                queue_length=w.queue_length,
                seconds_since_heartbeat=round(now - w.last_seen, 3),
            )
            for w in self.workers.values()
        ]
        return ControllerStatus(workers=workers, models=self.list_models(), dispatch=self.dispatch)

    def _expire(self) -> None:
        deadline = self.clock() - self.heartbeat_expiry
        for address in [a for a, w in self.workers.items() if w.last_seen < deadline]:
            del self.workers[address]


SECRET = {"dependencies": [Depends(require_worker_secret)]}  # every route but /health


def create_app(config: ControllerConfig, *, controller: Controller | None = None) -> FastAPI:
    """The controller's HTTP app; state lives on ``app.state.controller``."""
    app = FastAPI(title="fastchat-lite controller")
    app.state.controller = controller or Controller(
        dispatch=config.dispatch, heartbeat_expiry=config.heartbeat_expiry
    )
    app.state.worker_secret = config.worker_secret
    install_error_handlers(app)
    install_body_limit(app, config.max_body_bytes)

    @app.post("/register_worker", **SECRET)
    async def register_worker(
        req: RegisterWorkerRequest, request: Request
    ) -> RegisterWorkerResponse:
        return request.app.state.controller.register(req)

    @app.post("/heartbeat", **SECRET)
    async def heartbeat(req: HeartbeatRequest, request: Request) -> HeartbeatResponse:
        return request.app.state.controller.heartbeat(req)

    @app.post("/list_models", **SECRET)
    async def list_models(request: Request) -> ListModelsResponse:
        return ListModelsResponse(models=request.app.state.controller.list_models())

    @app.post("/get_worker_address", **SECRET)
    async def get_worker_address(
        req: WorkerAddressRequest, request: Request
    ) -> WorkerAddressResponse:
        worker = request.app.state.controller.pick(req.model)
        return WorkerAddressResponse(address=worker.address, context_length=worker.context_length)

    @app.post("/report_failure", **SECRET)
    async def report_failure(req: ReportFailureRequest, request: Request) -> dict[str, bool]:
        request.app.state.controller.remove(req.worker_address)
        return {"removed": True}

    @app.get("/status", **SECRET)
    async def status(request: Request) -> ControllerStatus:
        return request.app.state.controller.status()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
