"""Worker processes for `teleroom serve` (TELEROOM_WORKERS): several processes on one port, one parent.

Each worker is a whole Teleroom process (its own pool, hub, relay and outbox worker) that binds the
same host and port with SO_REUSEPORT, so the kernel spreads new connections over them; to the
cluster each is one more node (signaling between them goes through PostgreSQL). The parent serves
nothing and opens no database connection; it starts, watches and stops the workers:

- A worker tells the parent through a pipe when its socket listens. One that exits before that
  failed to start (configuration, the port, the database): the parent stops the others and exits 1,
  as a single process would, so a service manager sees the failure instead of a restart loop.
- A worker that exits after it was serving (a crash, the OOM killer, kill -9) is replaced at once;
  its participants reconnect as they do when a node dies. More than `MAX_RESTARTS` replacements
  within `RESTART_WINDOW_SECONDS` is a crash loop: stop everything, exit 1.
- SIGTERM or SIGINT to the parent goes to every worker as SIGTERM (each drains and stops as a
  single process does); the parent exits 0 once all have exited 0, 1 otherwise. Workers still
  running after `STOP_SECONDS` are killed.
- A worker whose parent is gone (its pipe reads end-of-file: the parent was killed) stops itself,
  so no orphan keeps the port.

Workers are started with multiprocessing's `spawn`: a fresh interpreter each, nothing inherited
from the parent but the settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web

from broker.settings import Settings

log = logging.getLogger("teleroom")

SERVING = "serving"
# Longer than a worker's own shutdown (open sockets told to reconnect, requests finished).
STOP_SECONDS = 45.0
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


class Lifeline:
    """A worker's end of its pipe to the parent: says when the worker serves, hears when the parent is gone."""

    def __init__(self, pipe: Connection, number: int) -> None:
        self.pipe = pipe
        self.number = number

    def serving(self, *_: object) -> None:
        """`web.run_app`'s `print` hook, which it calls once every site is listening."""
        log.info("worker %d (pid %d) serving", self.number, os.getpid())
        self.pipe.send(SERVING)

    def attach(self, app: web.Application) -> None:
        """Stop the worker (SIGTERM to itself, the same graceful path) when the parent goes away."""

        async def watch(app: web.Application) -> None:
            asyncio.get_running_loop().add_reader(self.pipe.fileno(), self._parent_gone)

        app.on_startup.append(watch)

    def _parent_gone(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pipe.fileno())
        log.warning("worker %d: the parent process is gone; stopping", self.number)
        os.kill(os.getpid(), signal.SIGTERM)


# What a worker process runs: serve `settings` until SIGTERM, telling `lifeline` when it listens.
Serve = Callable[[Settings, Lifeline], None]


def _worker_main(serve: Serve, settings: Settings, pipe: Connection, number: int) -> None:
    serve(settings, Lifeline(pipe, number))


@dataclasses.dataclass
class Worker:
    number: int
    process: BaseProcess
    pipe: Connection  # the parent's end
    serving: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid or 0


def describe(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"status {exitcode}"


class Supervisor:
    """The parent of `settings.workers` worker processes each running `serve` (see the module docstring)."""

    def __init__(self, settings: Settings, serve: Serve) -> None:
        self.settings = settings
        self.serve = serve
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []
        self.restarts: list[float] = []
        self.stop_signal: int | None = None

    def start(self, number: int) -> Worker:
        parent_end, worker_end = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main,
            args=(self.serve, self.settings, worker_end, number),
            name=f"teleroom-worker-{number}",
        )
        process.start()
        worker_end.close()  # the worker's copy is its own; the parent's end sees EOF when it exits
        return Worker(number, process, parent_end)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def run(self) -> int:
        """Start the workers and watch them until told to stop; the exit status for the node."""
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.workers = [self.start(n) for n in range(1, self.settings.workers + 1)]
            return self._watch(wake_read)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            wake_read.close()
            wake_write.close()

    def _watch(self, wake: socket.socket) -> int:
        announced = False
        while True:
            if self.stop_signal is not None:
                log.info("%s: stopping %d workers", signal.Signals(self.stop_signal).name, len(self.workers))
                return self.stop(0)
            waiting: list[Connection | socket.socket | int] = [wake]
            waiting += [w.process.sentinel for w in self.workers]
            waiting += [w.pipe for w in self.workers if not w.serving]
            ready = wait(waiting)
            if wake in ready:
                while True:
                    try:
                        if not wake.recv(64):
                            break
                    except BlockingIOError:
                        break
            for worker in list(self.workers):
                if not worker.serving and worker.pipe in ready:
                    try:
                        worker.serving = worker.pipe.recv() == SERVING
                    except EOFError:
                        pass  # it exited; its sentinel says so below
                if worker.process.sentinel in ready or not worker.process.is_alive():
                    code = self._exited(worker)
                    if code is not None:
                        return code
            if not announced and all(w.serving for w in self.workers):
                announced = True
                log.info(
                    "%d workers serving on %s:%s (pids %s)",
                    len(self.workers),
                    self.settings.host,
                    self.settings.port,
                    ", ".join(str(w.pid) for w in self.workers),
                )

    def _exited(self, worker: Worker) -> int | None:
        """A worker exited unasked: replace it, or stop the node (the exit status) when that cannot help."""
        worker.process.join()
        worker.pipe.close()
        self.workers.remove(worker)
        how = describe(worker.process.exitcode)
        if self.stop_signal is not None:
            return None
        if not worker.serving:
            log.error(
                "worker %d (pid %d) exited with %s before it was serving; stopping", worker.number, worker.pid, how
            )
            return self.stop(1)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            log.error(
                "worker %d (pid %d) exited with %s, the %d. time within %.0f s; stopping",
                worker.number,
                worker.pid,
                how,
                len(self.restarts),
                RESTART_WINDOW_SECONDS,
            )
            return self.stop(1)
        log.warning("worker %d (pid %d) exited with %s; starting another", worker.number, worker.pid, how)
        self.workers.append(self.start(worker.number))
        return None

    def stop(self, status: int) -> int:
        """SIGTERM to every worker, wait for them (SIGKILL after STOP_SECONDS); `status`, or 1 if one failed."""
        for worker in self.workers:
            if worker.process.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error(
                    "worker %d (pid %d) still running after %.0f s; killing it", worker.number, worker.pid, STOP_SECONDS
                )
                worker.process.kill()
                worker.process.join()
            if worker.process.exitcode != 0:
                log.error(
                    "worker %d (pid %d) stopped with %s", worker.number, worker.pid, describe(worker.process.exitcode)
                )
                status = 1
            worker.pipe.close()
        self.workers = []
        return status


def supervise(settings: Settings, serve: Serve) -> int:
    """Run `settings.workers` processes of `serve` on one port until SIGTERM; the node's exit status."""
    return Supervisor(settings, serve).run()
