"""Run one function over many files in worker processes, each file bounded in time.

A file that fails, hangs or crashes its process becomes a one-line reason; it never stops the
rest (used by the tokenization and audio steps of ``musgen data build``, for any picklable per-file
function; a crash is pinned on the file that caused it, not on the files that shared its pool).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm

from musgen.errors import MusgenError

log = logging.getLogger(__name__)

Result = tuple[Any, str | None]  # (value, None) or (None, reason)
KeyedResult = tuple[str, Any, str | None]  # (key, value, None) or (key, None, reason)


def mp_context() -> mp.context.BaseContext:
    """fork where it exists (cheap: music21, miditok and torch are already imported), else spawn."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


class _FileTimeout(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _FileTimeout


def _run_chunk(
    func: Callable[[Any], Any], chunk: list[tuple[str, Any]], timeout: float, hard: bool
) -> list[KeyedResult]:
    """Soft limit: SIGALRM (wall clock) raises inside Python code. Hard limit (pool workers only):
    SIGPROF after 2x the CPU time with its default action kills the worker even when it is stuck
    in C code; the parent then retries that chunk file by file."""
    main = threading.current_thread() is threading.main_thread()
    out: list[KeyedResult] = []
    for key, arg in chunk:
        if main:
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            if hard:
                signal.signal(signal.SIGPROF, signal.SIG_DFL)
                signal.setitimer(signal.ITIMER_PROF, 2 * timeout + 5)
        try:
            out.append((key, func(arg), None))
        except _FileTimeout:
            out.append((key, None, f"processing exceeded {timeout:g} s"))
        except Exception as e:  # never let one file stop the build
            reason = getattr(e, "reason", None) or (str(e) if isinstance(e, MusgenError) else "")
            out.append((key, None, (reason or f"{type(e).__name__}: {e}").splitlines()[0][:300]))
        finally:
            if main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                if hard:
                    signal.setitimer(signal.ITIMER_PROF, 0)
    return out


def run_files(
    func: Callable[[Any], Any], items: list[tuple[str, Any]], *, workers: int, timeout: float, desc: str
) -> dict[str, Result]:
    """``func(arg)`` for every ``(key, arg)``; returns key -> (value, None) or (None, reason).

    ``func`` must be a module-level function (it is pickled to the workers). An exception with a
    ``reason`` attribute (``MidiReadError``, ``AudioReadError``, ``RenderError``) gives that reason,
    another ``MusgenError`` its message, any other exception its type and message.
    """
    results: dict[str, Result] = {}
    if not items:
        return results
    bar = tqdm(total=len(items), desc=desc, unit="file")

    def record(res: list[KeyedResult]) -> None:
        for key, value, reason in res:
            results[key] = (value, reason)
        bar.update(len(res))

    if workers <= 1 or len(items) <= 2:
        for it in items:
            record(_run_chunk(func, [it], timeout, hard=False))
        bar.close()
        return results

    def pool(chunks: list[list], n: int) -> list[list]:
        """Run chunks in a pool of n processes; returns the chunks whose process died."""
        broken = []
        with ProcessPoolExecutor(n, mp_context=mp_context()) as ex:
            futs = {ex.submit(_run_chunk, func, chunk, timeout, True): chunk for chunk in chunks}
            for fut in as_completed(futs):
                try:
                    record(fut.result())
                except Exception:  # BrokenProcessPool: a worker died (crash or hard limit)
                    broken.append(futs[fut])
        return broken

    size = max(1, min(8, len(items) // (workers * 4)))
    pending = [items[i : i + size] for i in range(0, len(items), size)]
    while pending:
        broken = pool(pending, min(workers, len(pending)))
        pending = []
        for chunk in broken:
            if len(chunk) > 1:  # retry one by one to find the culprit
                pending += [[it] for it in chunk]
            elif pool([chunk], 1):  # alone in its own process: a dead pool took it down, or it is the culprit
                log.warning("file %s killed its worker process", chunk[0][0])
                record([(chunk[0][0], None, "worker process crashed or exceeded the hard time limit")])
    bar.close()
    return results
