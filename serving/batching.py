"""Dynamic micro-batching: concurrent requests' pairs are scored in one onnxruntime call.

Each request puts its pairs on a queue with a future; one worker takes what is waiting (up to
`max_batch` pairs; with `max_wait_ms` > 0 it first waits that long for more), runs the engine in a
thread so the event loop keeps accepting requests, and resolves every request's future with its rows.
By default there is no extra wait: while one batch runs, the next fills with the requests that arrive.

One request can only ever fail itself: when a merged call raises, every request in it is scored again
on its own, and only those that fail alone get the error (wrapped in `ScoringError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class ScoringError(RuntimeError):
    """Scoring this request's pairs failed (alone, not because of a neighbour in the batch)."""


@dataclass
class _Item:
    premises: list[str]
    hypotheses: list[str]
    future: asyncio.Future


class MicroBatcher:
    def __init__(
        self,
        score: Callable[[list[str], list[str]], np.ndarray],
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def submit(self, premises: list[str], hypotheses: list[str]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(premises, hypotheses, future))
        return await future

    async def _collect(self) -> list[_Item]:
        """The first waiting request, then (after at most `max_wait`, unless the batch is full) whatever else
        is queued, up to `max_batch` pairs."""
        items = [await self.queue.get()]
        size = len(items[0].premises)
        if size < self.max_batch and self.queue.empty() and self.max_wait > 0:
            await asyncio.sleep(self.max_wait)
        while size < self.max_batch and not self.queue.empty():
            item = self.queue.get_nowait()
            items.append(item)
            size += len(item.premises)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            premises = [p for it in items for p in it.premises]
            hypotheses = [h for it in items for h in it.hypotheses]
            try:
                logits = await loop.run_in_executor(None, self.score, premises, hypotheses)
            except Exception as exc:
                await self._isolate(items, exc)
                continue
            self.on_batch(len(premises))
            start = 0
            for it in items:
                n = len(it.premises)
                if not it.future.done():
                    it.future.set_result(logits[start : start + n])
                start += n

    async def _isolate(self, items: list[_Item], exc: Exception) -> None:
        """The merged call failed: score each request alone so the error reaches only the requests that
        cause it."""
        loop = asyncio.get_running_loop()
        for it in items:
            if it.future.done():
                continue
            if len(items) > 1:
                try:
                    logits = await loop.run_in_executor(None, self.score, it.premises, it.hypotheses)
                except Exception as own:
                    exc = own
                else:
                    self.on_batch(len(it.premises))
                    if not it.future.done():
                        it.future.set_result(logits)
                    continue
            if not it.future.done():
                it.future.set_exception(ScoringError(f"{type(exc).__name__}: {exc}"))
