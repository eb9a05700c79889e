"""Keeps the next few batches of an input queue ready in a background thread.

The runner waits for the device after every step (the submission clock must
not leak device work into evals), so without help the host would build the
next batch only after the device finished the previous step: the device idles
while numpy gathers and copies. ``Prefetcher`` pulls batches from any iterator
in a thread, up to ``buffer_size`` ahead, so the next batch is usually waiting
when the submission asks for it.

Guarantees:

* Order: one producer thread, a FIFO queue: the consumer sees exactly the
  source's sequence, so runs stay reproducible.
* Bounded memory: at most ``buffer_size`` batches wait in the queue (plus the
  one the thread is building).
* Errors: an exception raised by the source is re-raised, unchanged and with
  its traceback, by the ``next()`` call that reaches it; the prefetcher is
  closed after that.
* Shutdown: ``close()`` (also on ``with`` exit, garbage collection and
  interpreter exit) stops the thread, waits for it, drops buffered batches
  and closes the source if it has a ``close`` method (generators). The thread
  holds no reference to the prefetcher, so an abandoned one is collected.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional

import jax
import numpy as np

_END = object()  # The source is exhausted.
# How long close() waits for a source stuck in next() before giving up.
_JOIN_TIMEOUT_SEC = 60.0


class _Failure:
  """Carries an exception from the producer thread to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


def place_on_device(batch: Any) -> Any:
  """Shards numpy leaves of ``batch`` along the batch axis; JAX arrays are kept.

  Workload iterators normally place their batches themselves; this covers
  those that yield host arrays.
  """
  from algoperf import jax_sharding_utils  # pylint: disable=import-outside-toplevel

  if not any(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(batch)):
    return batch
  sharding = jax_sharding_utils.get_batch_dim_sharding()
  return jax.tree.map(
      lambda leaf: (jax.device_put(leaf, sharding)
                    if isinstance(leaf, np.ndarray) else leaf), batch)


def _produce(source: Iterator[Any], place: Callable[[Any], Any],
             buffer: 'queue.Queue[Any]', stop: threading.Event) -> None:
  """The thread's body: fills ``buffer`` from ``source`` until told to stop."""
  while not stop.is_set():
    try:
      item = place(next(source))
    except StopIteration:
      item = _END
    except BaseException as e:  # pylint: disable=broad-except
      item = _Failure(e)
    # Blocks while the buffer is full; close() empties it to wake us up.
    buffer.put(item)
    if item is _END or isinstance(item, _Failure):
      return


def _drain(buffer: 'queue.Queue[Any]') -> None:
  while True:
    try:
      buffer.get_nowait()
    except queue.Empty:
      return


def _shutdown(source: Iterator[Any], buffer: 'queue.Queue[Any]',
              stop: threading.Event, thread: threading.Thread) -> None:
  """Stops ``thread``, drops what it buffered and closes ``source``."""
  stop.set()
  # The thread checks ``stop`` after each put, and puts at most once more
  # after this drain, so it can no longer block on a full buffer.
  _drain(buffer)
  if thread is not threading.current_thread():
    thread.join(_JOIN_TIMEOUT_SEC)
  if thread.is_alive():
    # Only a source blocked inside next() gets here; the thread is a daemon,
    # so it cannot keep the process alive.
    logging.warning('Input prefetch thread still busy in next() after %.0f s; '
                    'leaving it behind.', _JOIN_TIMEOUT_SEC)
    return
  _drain(buffer)  # The batch it may have put after the first drain.
  close = getattr(source, 'close', None)
  if close is not None:
    close()


class Prefetcher(Iterator[Any]):
  """An iterator over ``source``'s items, produced ``buffer_size`` ahead in a thread.

  Args:
    source: any iterable of batches.
    buffer_size: how many finished batches may wait for the consumer (>= 1).
    place: applied to each batch in the thread; by default numpy leaves are
      sharded along the batch axis (see :func:`place_on_device`).
  """

  def __init__(self, source: Iterable[Any], buffer_size: int = 2,
               place: Optional[Callable[[Any], Any]] = place_on_device):
    if buffer_size < 1:
      raise ValueError(f'buffer_size must be >= 1, got {buffer_size}.')
    self._buffer: 'queue.Queue[Any]' = queue.Queue(maxsize=buffer_size)
    self._closed = False
    source = iter(source)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce,
        args=(source, place or (lambda batch: batch), self._buffer, stop),
        name='algoperf-prefetch', daemon=True)
    # Runs on close(), on garbage collection and at interpreter exit,
    # whichever comes first, and only once.
    self._finalizer = weakref.finalize(self, _shutdown, source, self._buffer,
                                       stop, thread)
    thread.start()

  def __iter__(self) -> 'Prefetcher':
    return self

  def __next__(self) -> Any:
    if self._closed:
      raise StopIteration
    item = self._buffer.get()
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    return item

  def close(self) -> None:
    """Stops the thread and releases buffered batches; safe to call twice."""
    self._closed = True
    self._finalizer()

  def __enter__(self) -> 'Prefetcher':
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
