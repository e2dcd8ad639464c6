"""A batching sender for logger plugins that ship events to an HTTP backend.

A plugin encodes each event into bytes and hands it to `BatchSender.submit`, which
only appends to a bounded buffer and returns. One daemon thread per sender takes
batches off the buffer and passes them to a send function that the plugin provides,
so that each plugin keeps its own wire protocol (payload framing, compression,
authentication). The sender owns the delivery policy:

- a batch goes out when it reaches `max_batch_entries` entries or `max_batch_bytes`
  bytes, or when its oldest entry has waited `flush_interval` seconds;
- the buffer is bounded in entries and in bytes. An entry that does not fit is
  dropped and counted, so a dead backend costs bounded memory;
- 408, 429, 5xx and connection errors are retried with exponential backoff and full
  jitter, up to `max_attempts` attempts. A `Retry-After` delay is honoured up to
  `max_delay`;
- 413 splits the batch in halves, each sent on its own; a single entry that is
  still too large is dropped and counted;
- 401 and 403 mark the credentials as rejected in `health()`. That batch is not
  retried. The next batch is tried once, so a fixed key recovers on its own;
- every other status is a failure that is counted and not retried;
- `flush(timeout)` sends what is buffered within the deadline, and `close(timeout)`
  also stops the thread. Both return what could not be sent and log its keys.

Only the standard library is used, so hookgate-core stays light. The sender is
given no secret, because the send function adds the authentication headers itself.
It logs statuses, counts, entry keys (call ids) and excerpts of error responses,
which `HttpResponse.to_result` clears of the secrets a plugin names.

`BatchingLogger` is the base class of such a plugin. It implements the event, flush
and health hooks on top of one sender, so that a plugin writes only `logger_setup`
and `encode_event`. The settings helpers at the end of this module validate the
options that every such plugin shares.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from hookgate.events import CallEvent
from hookgate.hookspecs import hookimpl
from hookgate.ratelimit import RateLimitedLog

__all__ = [
    "LANE_SETTINGS",
    "LOOPBACK_HOSTS",
    "SENDER_SETTINGS",
    "BatchSender",
    "BatchingLogger",
    "FlushIncomplete",
    "FlushReport",
    "HttpResponse",
    "SendFunction",
    "SendResult",
    "SenderCounters",
    "check_backend_url",
    "check_setting_keys",
    "flush_budget",
    "http_post",
    "parse_retry_after",
    "redact_url",
    "sender_options",
    "text_setting",
]

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429})
CREDENTIAL_STATUSES = frozenset({401, 403})
LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same kind of repeated problem."""
KEYS_PER_LOG_LINE = 100
MIN_FLUSH_ATTEMPT_TIME = 0.1
"""Seconds a flush must have left to shorten a retry delay instead of giving up."""


@dataclass(frozen=True)
class SendResult:
    """The backend's response to one batch, as a send function reports it."""

    status: int
    """HTTP status code."""
    retry_after: float | None = None
    """Seconds the backend asked to wait before the next attempt (`Retry-After`)."""
    rejected: Sequence[int] = ()
    """Indexes of entries the backend refused one by one in an accepted batch (for
    example the errors of a Langfuse 207 response). They are counted as failed and
    not retried."""
    detail: str | None = None
    """A short, secret-free description of a failure, for logs and health."""


SendFunction = Callable[[Sequence[bytes], float], "int | SendResult"]
"""Send one batch of encoded entries within a timeout in seconds.

Returns the HTTP status (or a `SendResult`); raises `OSError` or
`http.client.HTTPException` for connection errors, which are retried. Any other
exception is a bug in the plugin: the batch fails without retry.
"""


@dataclass
class SenderCounters:
    """Entry and batch counters of one sender, all cumulative since it started."""

    submitted: int = 0
    """Entries passed to `submit`, accepted or not."""
    sent: int = 0
    """Entries the backend accepted."""
    failed: int = 0
    """Entries given up after at least one send attempt."""
    dropped: int = 0
    """Entries never sent: buffer full, too large, or still queued at close."""
    oversized: int = 0
    """Entries dropped because they exceed the batch size limit on their own (also in
    `dropped`)."""
    retried: int = 0
    """Send attempts that repeated an earlier attempt of the same batch."""
    batches: int = 0
    """Batches the backend accepted."""
    splits: int = 0
    """Batches split in halves after a 413 response."""
    last_status: int | None = None
    last_error: str | None = None
    last_error_time: float | None = None
    """Unix time of the last error."""
    last_success_time: float | None = None
    """Unix time of the last accepted batch."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FlushReport:
    """The outcome of one `flush` or `close` at its deadline."""

    sent: int = 0
    """Entries the backend accepted during the flush."""
    unsent_keys: list[str] = field(default_factory=list)
    """Keys of entries not sent: given up, still queued, or dropped at close."""
    in_flight_keys: list[str] = field(default_factory=list)
    """Keys of entries whose send was still running at the deadline. Their outcome is
    counted later in `sent` or `failed` if the process lives long enough."""

    @property
    def unsent(self) -> int:
        return len(self.unsent_keys)

    @property
    def in_flight(self) -> int:
        return len(self.in_flight_keys)

    @property
    def complete(self) -> bool:
        return not self.unsent_keys and not self.in_flight_keys

    def raise_if_incomplete(self, name: str) -> None:
        """Raise FlushIncomplete, naming plugin `name` and the counts, unless complete."""
        if not self.complete:
            raise FlushIncomplete(f"{name}: {self.unsent} entries not sent and "
                                  f"{self.in_flight} still in flight at the flush deadline; "
                                  "their keys are logged")


def flush_budget(timeout: float) -> float:
    """Return the part of a `logger_flush` timeout that a sender may spend.

    hookgate stops waiting for the hook when `timeout` runs out, so a flush that
    used all of it would be reported as timed out even when it finished. The rest
    (a tenth, at most 0.25 s) covers returning from the hook.
    """
    return max(0.0, timeout - min(0.25, timeout / 10))


class FlushIncomplete(RuntimeError):
    """Raised by a plugin's `logger_flush` when entries were left unsent at the deadline.

    hookgate then lists the plugin under "flush failed" in its shutdown report,
    instead of reporting a clean shutdown. The keys of the lost entries are already
    logged by the sender.
    """


@dataclass
class _Entry:
    key: str
    data: bytes
    queued_at: float


class _GiveUp(Exception):
    """The flush deadline leaves no time for another attempt of the current batch."""


class BatchSender:
    """A bounded buffer and one background thread that sends its entries in batches.

    `payload_overhead` and `separator_bytes` describe the framing the send function
    adds around the entries, so that the byte limit applies to the real payload:
    a JSON array costs 2 bytes of overhead and 1 byte per comma.
    """

    def __init__(
        self,
        name: str,
        send: SendFunction,
        *,
        max_batch_entries: int = 100,
        max_batch_bytes: int = 1_000_000,
        max_entry_bytes: int | None = None,
        payload_overhead: int = 2,
        separator_bytes: int = 1,
        flush_interval: float = 5.0,
        max_queue_entries: int = 10_000,
        max_queue_bytes: int = 32 * 1024 * 1024,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        request_timeout: float = 10.0,
    ) -> None:
        for option, value in (("max_batch_entries", max_batch_entries),
                              ("max_queue_entries", max_queue_entries),
                              ("max_attempts", max_attempts)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        for option, number in (("flush_interval", flush_interval), ("max_delay", max_delay),
                               ("request_timeout", request_timeout)):
            if number <= 0:
                raise ValueError(f"{option} must be positive, got {number}")
        if max_batch_bytes <= payload_overhead:
            raise ValueError(f"max_batch_bytes must exceed payload_overhead "
                             f"({payload_overhead}), got {max_batch_bytes}")
        if base_delay < 0:
            raise ValueError(f"base_delay must not be negative, got {base_delay}")

        self.name = name
        self._send = send
        self.max_batch_entries = max_batch_entries
        self.max_batch_bytes = max_batch_bytes
        # An entry must fit in a batch on its own, and the backend may set a lower
        # limit per entry.
        self.max_entry_bytes = max_batch_bytes - payload_overhead
        if max_entry_bytes is not None:
            self.max_entry_bytes = min(self.max_entry_bytes, max_entry_bytes)
        self.payload_overhead = payload_overhead
        self.separator_bytes = separator_bytes
        self.flush_interval = flush_interval
        self.max_queue_entries = max_queue_entries
        self.max_queue_bytes = max_queue_bytes
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.request_timeout = request_timeout

        self.counters = SenderCounters()
        self.credentials_rejected = False
        self.backend_state = "unknown"
        self._buffer: deque[_Entry] = deque()
        self._buffer_bytes = 0
        self._in_flight: list[_Entry] = []
        self._flush_deadline: float | None = None
        self._given_up_during_flush: list[str] = []
        self._closed = False
        self._stopping = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._drop_log = RateLimitedLog(logger, logging.WARNING, LOG_INTERVAL)
        self._error_log = RateLimitedLog(logger, logging.ERROR, LOG_INTERVAL)
        self._retry_log = RateLimitedLog(logger, logging.WARNING, LOG_INTERVAL)
        self._thread = threading.Thread(target=self._run, name=f"hookgate-batch-{name}",
                                        daemon=True)
        self._thread.start()

    # Producer side

    def submit(self, data: bytes, key: str) -> bool:
        """Queue one encoded entry; `key` (a call id) names it in logs.

        Takes a lock that the sending thread holds only briefly, and never waits for
        the network.

        Returns False if the entry was dropped because the buffer is full, the
        sender is closed, or the entry exceeds `max_entry_bytes` or, with the
        payload framing, `max_batch_bytes`.
        """
        size = len(data)
        with self._changed:
            self.counters.submitted += 1
            if self._closed:
                self._drop(key, "the sender is closed")
                return False
            if size > self.max_entry_bytes:
                self.counters.oversized += 1
                self._drop(key, f"entry of {size} bytes exceeds the limit of "
                           f"{self.max_entry_bytes} bytes per entry")
                return False
            if (len(self._buffer) >= self.max_queue_entries
                    or self._buffer_bytes + size > self.max_queue_bytes):
                self._drop(key, f"buffer full ({len(self._buffer)} entries, "
                           f"{self._buffer_bytes} bytes)")
                return False

            self._buffer.append(_Entry(key, data, time.monotonic()))
            self._buffer_bytes += size
            # Wake the thread for the first entry, which starts the flush interval, and
            # for a full batch. In between, the thread already waits with a timeout.
            if (len(self._buffer) == 1 or len(self._buffer) >= self.max_batch_entries
                    or self._buffer_bytes >= self.max_batch_bytes):
                self._changed.notify_all()
        return True

    def _drop(self, key: str, reason: str) -> None:
        self.counters.dropped += 1
        self._drop_log.log("%s: entry %s dropped: %s", self.name, key, reason)

    # Shutdown

    def flush(self, timeout: float) -> FlushReport:
        """Send every buffered entry now, waiting at most `timeout` seconds.

        Retries still happen while they fit before the deadline. Returns the keys
        of the entries that could not be sent; they are also logged.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            sent_before = self.counters.sent
            self._flush_deadline = deadline
            self._given_up_during_flush = []
            self._changed.notify_all()

            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)

            given_up = set(self._given_up_during_flush)
            report = FlushReport(
                sent=self.counters.sent - sent_before,
                unsent_keys=[*self._given_up_during_flush,
                             *(entry.key for entry in self._buffer)],
                in_flight_keys=[entry.key for entry in self._in_flight
                                if entry.key not in given_up],
            )
            self._flush_deadline = None
            self._given_up_during_flush = []

        self._log_report("flush", report)
        return report

    def close(self, timeout: float) -> FlushReport:
        """Flush within `timeout` seconds, then stop the thread and drop what is left.

        Entries submitted after this are dropped and counted.
        """
        report = self.flush(timeout)
        with self._changed:
            self._closed = True
            self._stopping = True
            leftover = list(self._buffer)
            self._buffer.clear()
            self._buffer_bytes = 0
            self.counters.dropped += len(leftover)
            sending = bool(self._in_flight)
            self._changed.notify_all()

        # A send still running keeps its thread alive, and waiting for it would pass
        # the deadline. The thread is a daemon, so it does not hold up the process,
        # and the outcome is still counted if the send ends first.
        if not sending:
            self._thread.join(timeout=0.5)
        logger.info("%s: batch sender stopped: %d sent in total, %d failed, %d dropped",
                    self.name, self.counters.sent, self.counters.failed, self.counters.dropped)
        return report

    def _log_report(self, action: str, report: FlushReport) -> None:
        if report.complete:
            logger.info("%s: %s sent %d entries, none left", self.name, action, report.sent)
            return
        logger.error("%s: %s ended with %d entries not sent and %d still in flight",
                     self.name, action, report.unsent, report.in_flight)
        for label, keys in (("not sent", report.unsent_keys),
                            ("in flight, outcome unknown", report.in_flight_keys)):
            for start in range(0, len(keys), KEYS_PER_LOG_LINE):
                logger.error("%s: %s: %s", self.name, label,
                             " ".join(keys[start:start + KEYS_PER_LOG_LINE]))

    # Introspection

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._buffer)

    def health(self) -> dict[str, Any]:
        """Return the backend state, counters and buffer size; safe to call at any time."""
        with self._lock:
            state = "credentials rejected" if self.credentials_rejected else self.backend_state
            return {
                "backend": state,
                "queued": len(self._buffer),
                "queued_bytes": self._buffer_bytes,
                "in_flight": len(self._in_flight),
                **self.counters.as_dict(),
            }

    # The sending thread

    def _run(self) -> None:
        while True:
            with self._changed:
                batch = self._next_batch()
                if batch is None:
                    return
                self._in_flight = batch
            try:
                self._deliver(batch)
            except Exception:  # The thread must outlive a bug in its own code.
                logger.exception("%s: unexpected error while sending %d entries; their "
                                 "outcome is not counted", self.name, len(batch))
            finally:
                with self._changed:
                    self._in_flight = []
                    self._changed.notify_all()

    def _next_batch(self) -> list[_Entry] | None:
        """Wait until a batch is due and take it off the buffer; None once stopping.

        Called with the lock held.
        """
        while True:
            if self._stopping:
                return None
            if self._buffer and self._batch_due():
                return self._take_batch()
            if self._buffer:
                wait = self._buffer[0].queued_at + self.flush_interval - time.monotonic()
                self._changed.wait(max(wait, 0.001))
            else:
                self._changed.wait()

    def _batch_due(self) -> bool:
        return (self._flush_deadline is not None
                or len(self._buffer) >= self.max_batch_entries
                or self._buffer_bytes >= self.max_batch_bytes
                or time.monotonic() - self._buffer[0].queued_at >= self.flush_interval)

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = self.payload_overhead
        while self._buffer and len(batch) < self.max_batch_entries:
            entry = self._buffer[0]
            added = len(entry.data) + (self.separator_bytes if batch else 0)
            if batch and size + added > self.max_batch_bytes:
                break
            self._buffer.popleft()
            self._buffer_bytes -= len(entry.data)
            batch.append(entry)
            size += added
        return batch

    def _deliver(self, batch: list[_Entry]) -> None:
        """Send one batch with retries, splitting it on 413; count every entry's outcome."""
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._attempt(batch)
            except (OSError, http.client.HTTPException) as error:
                outcome = f"{type(error).__name__}: {error}"
                self._record_error(None, outcome, "unreachable")
                if not self._wait_before_retry(batch, attempt, None, outcome):
                    return
                continue
            except _GiveUp:
                with self._changed:
                    self._give_up(batch, "the flush deadline passed")
                return
            except Exception as error:  # A bug in the plugin's send function.
                logger.exception("%s: the send function raised for %d entries (first %s)",
                                 self.name, len(batch), batch[0].key)
                self._record_error(None, f"{type(error).__name__}: {error}", "error")
                with self._changed:
                    self._give_up(batch, "the send function raised; not retried")
                return

            status = result.status
            if 200 <= status < 300:
                self._record_success(batch, result)
                return
            detail = f"HTTP {status}" + (f": {result.detail}" if result.detail else "")

            if status == 413:
                self._record_error(status, detail, "ok")
                self._split(batch)
                return
            if status in CREDENTIAL_STATUSES:
                self._record_error(status, detail, "credentials rejected")
                with self._changed:
                    self.credentials_rejected = True
                    self._give_up(batch, f"{detail}: the backend rejected the credentials; "
                                  "check the configured key")
                return
            if status in RETRYABLE_STATUSES or 500 <= status < 600:
                self._record_error(status, detail, "error")
                if not self._wait_before_retry(batch, attempt, result.retry_after, detail):
                    return
                continue

            self._record_error(status, detail, "error")
            with self._changed:
                self._give_up(batch, f"{detail}: not retried")
            return

    def _attempt(self, batch: list[_Entry]) -> SendResult:
        timeout = self.request_timeout
        deadline = self._flush_deadline
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _GiveUp
            timeout = min(timeout, remaining)
        result = self._send([entry.data for entry in batch], timeout)
        return result if isinstance(result, SendResult) else SendResult(int(result))

    def _split(self, batch: list[_Entry]) -> None:
        if len(batch) == 1:
            entry = batch[0]
            with self._changed:
                self.counters.oversized += 1
                self.counters.dropped += 1
                self._note_flush_loss([entry])
            self._error_log.log("%s: entry %s dropped: the backend rejected it as too large "
                                "(HTTP 413) on its own", self.name, entry.key)
            return
        with self._changed:
            self.counters.splits += 1
        middle = len(batch) // 2
        logger.info("%s: HTTP 413 for a batch of %d entries; sending it as %d + %d",
                    self.name, len(batch), middle, len(batch) - middle)
        self._deliver(batch[:middle])
        self._deliver(batch[middle:])

    def _wait_before_retry(self, batch: list[_Entry], attempt: int,
                           retry_after: float | None, outcome: str) -> bool:
        """Sleep before the next attempt; False (batch given up) if none is left."""
        if attempt >= self.max_attempts:
            with self._changed:
                self._give_up(batch, f"{outcome}; gave up after {attempt} attempts")
            return False

        # Full jitter: a random delay between 0 and the exponential cap, so that many
        # senders recovering together do not retry in step.
        delay = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.max_delay)
        wake_at = time.monotonic() + delay
        self._retry_log.log("%s: %s; retrying %d entries in %.2f s (attempt %d of %d)",
                            self.name, outcome, len(batch), delay, attempt + 1,
                            self.max_attempts)

        with self._changed:
            while not self._stopping:
                now = time.monotonic()
                deadline = self._flush_deadline
                if deadline is not None and wake_at >= deadline:
                    # At shutdown a sooner retry beats none, unless the backend asked
                    # for the delay with Retry-After.
                    if retry_after is None and deadline - now > MIN_FLUSH_ATTEMPT_TIME:
                        wake_at = now + (deadline - now) / 2
                        continue
                    self._give_up(batch, f"{outcome}; no time left for a retry before the "
                                  "flush deadline")
                    return False
                if now >= wake_at:
                    break
                self._changed.wait(wake_at - now)
            if self._stopping:
                self._give_up(batch, f"{outcome}; the sender was closed")
                return False
            self.counters.retried += 1
        return True

    # Bookkeeping

    def _record_success(self, batch: list[_Entry], result: SendResult) -> None:
        rejected = [batch[index] for index in sorted(set(result.rejected))
                    if 0 <= index < len(batch)]
        with self._changed:
            self.counters.sent += len(batch) - len(rejected)
            self.counters.batches += 1
            self.counters.last_status = result.status
            self.counters.last_success_time = time.time()
            self.credentials_rejected = False
            self.backend_state = "ok"
            if rejected:
                self.counters.last_error = (f"HTTP {result.status}: {len(rejected)} entries "
                                            f"rejected: {result.detail or 'no detail'}")
                self.counters.last_error_time = time.time()
                self._give_up(rejected, f"HTTP {result.status}: the backend rejected these "
                              f"entries one by one ({result.detail or 'no detail'})")

    def _record_error(self, status: int | None, message: str, state: str) -> None:
        with self._changed:
            if status is not None:
                self.counters.last_status = status
            self.counters.last_error = message
            self.counters.last_error_time = time.time()
            self.backend_state = state

    def _give_up(self, entries: list[_Entry], reason: str) -> None:
        """Count `entries` as failed and log why. Called with the lock held."""
        self.counters.failed += len(entries)
        self._note_flush_loss(entries)
        first = entries[0].key if entries else "-"
        self._error_log.log("%s: %d entries not sent (first %s): %s", self.name, len(entries),
                            first, reason)

    def _note_flush_loss(self, entries: list[_Entry]) -> None:
        if self._flush_deadline is not None:
            self._given_up_during_flush.extend(entry.key for entry in entries)


# A plain HTTP POST for send functions


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Return a redirect as a response instead of following it.

    Following one would resend the authentication headers to wherever the redirect
    points, and urllib turns a redirected POST into a GET with no body anyway.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def parse_retry_after(value: str | None) -> float | None:
    """Return the delay in seconds that a `Retry-After` header value requests, or None.

    Accepts both forms of RFC 9110: a number of seconds and an HTTP date.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


@dataclass(frozen=True)
class HttpResponse:
    """The parts of an HTTP response that a send function needs."""

    status: int
    body: bytes
    """The whole body of a 2xx response; at most `detail_bytes` of any other."""
    retry_after: float | None = None

    def to_result(self, secrets: Sequence[str] = ()) -> SendResult:
        """Return the `SendResult` for this response, with an excerpt of an error body.

        Each of `secrets` is replaced by `***` in the excerpt, because it ends up in
        logs and health, and a server or a proxy in front of it may echo a request
        header back.
        """
        detail = None
        if not 200 <= self.status < 300:
            text = self.body.decode("utf-8", "replace")
            for secret in secrets:
                if secret:
                    text = text.replace(secret, "***")
            detail = text.strip()[:300] or None
        return SendResult(self.status, retry_after=self.retry_after, detail=detail)


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
              *, detail_bytes: int = 300, max_body_bytes: int = 1024 * 1024) -> HttpResponse:
    """POST `body` to `url` and return the status, body and `Retry-After` delay.

    Raises `OSError` (including `urllib.error.URLError` and timeouts) for connection
    errors, as `BatchSender` expects. Redirects are not followed. At most
    `max_body_bytes` of a 2xx body and `detail_bytes` of any other are read.
    """
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            content = response.read(max_body_bytes)
            return HttpResponse(response.status, content,
                                parse_retry_after(response.headers.get("Retry-After")))
    except urllib.error.HTTPError as error:
        try:
            content = error.read(detail_bytes)
        except (OSError, http.client.HTTPException):
            content = b""
        finally:
            error.close()
        return HttpResponse(error.code, content,
                            parse_retry_after(error.headers.get("Retry-After")))


def redact_url(url: str) -> str:
    """Return `url` without a user name, password or query string, for logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# Settings shared by the plugins that use a BatchSender

SENDER_SETTINGS = {
    "batch_size": ("max_batch_entries", int, "entries per batch"),
    "flush_interval": ("flush_interval", float, "seconds an entry may wait for its batch"),
    "max_queue": ("max_queue_entries", int, "entries buffered before new ones are dropped"),
    "request_timeout": ("request_timeout", float, "seconds per HTTP request"),
    "max_attempts": ("max_attempts", int, "send attempts per batch, the first included"),
    "max_retry_delay": ("max_delay", float, "maximum seconds between two attempts"),
}
"""Setting key: (BatchSender argument, type, meaning), for `callback_settings.<name>`."""


def sender_options(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Return the BatchSender arguments set by the keys of `SENDER_SETTINGS` in `settings`.

    Raises ValueError naming the key path (`prefix.key`) and the invalid value; a
    value must be a positive number (a whole one for the counts). Keys not present
    are left out, so the caller's defaults apply.
    """
    options: dict[str, Any] = {}
    for key, (argument, kind, meaning) in SENDER_SETTINGS.items():
        if key not in settings:
            continue
        value = settings[key]
        valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
                 and value > 0 and (kind is float or float(value).is_integer()))
        if not valid:
            whole = "a whole number" if kind is int else "a number"
            raise ValueError(f"{prefix}.{key}: invalid value {value!r}: expected {whole} "
                             f"greater than 0 ({meaning})")
        options[argument] = kind(value)
    return options



LANE_SETTINGS = frozenset({"required", "log_content"})
"""Keys of `callback_settings.<name>` that the proxy and hookgate-core act on themselves
(whether a request may disable the plugin, whether content is stripped first). A plugin
accepts and ignores them. Which events reach a plugin is set by the callback lists, not
here, so `success` and `failure` are not among them."""

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts to which plain http does not expose credentials on the network."""


def check_setting_keys(settings: Mapping[str, Any], own_keys: frozenset[str], prefix: str,
                       plugin: str) -> None:
    """Raise ValueError unless every key of `settings` is known to the plugin.

    Known are `own_keys`, the keys of `SENDER_SETTINGS` and `LANE_SETTINGS`. The
    message names the key path `prefix`, the unknown keys and all the keys that
    the `plugin` logger accepts.
    """
    known = own_keys | LANE_SETTINGS | set(SENDER_SETTINGS)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the {plugin} logger accepts {', '.join(sorted(known))}")


def text_setting(settings: Mapping[str, Any], key: str, prefix: str) -> str | None:
    """Return the string at `key` without surrounding blanks, or None if missing or blank.

    Raises ValueError naming the key path `prefix.key` if the value is not a string.
    """
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{prefix}.{key}: invalid value of type {type(value).__name__}: "
                         "expected a string")
    return value.strip() or None


def check_backend_url(url: str, source: str, *, expected: str, credentials: str) -> None:
    """Check that `url` is an http or https URL for a backend that takes credentials.

    Raises ValueError if `url` has another scheme, no host, or a user, password or
    query, and logs a warning if it is plain http to a host other than loopback.
    `source` is the key path or environment variable that set `url`. `expected`
    ends the sentence "expected an http or https URL ...", and `credentials` names
    the settings that carry the secrets. Messages show the URL through `redact_url`.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{source}: invalid value {redact_url(url)!r}: expected an http or "
                         f"https URL {expected}")
    if parts.username or parts.password or parts.query:
        raise ValueError(f"{source}: invalid value {redact_url(url)!r}: the URL must not "
                         f"contain a user, password or query; set {credentials} instead")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        logger.warning("%s is plain http to %s, so %s would travel unencrypted; use https",
                       source, parts.hostname, credentials)


# A base class for logger plugins that send through a BatchSender


class BatchingLogger:
    """A logger plugin that sends one entry per finished call through a `BatchSender`.

    It implements `log_success`, `log_failure`, `logger_flush` and `logger_health`;
    pluggy finds these hook implementations on every subclass. A subclass provides:

    - `logger_setup`, a hook implementation that validates the settings, then sets
      `name` and starts `sender`;
    - `encode_event`, which turns one event into the bytes of one entry;
    - optionally `health_details`, the plugin's own fields of `logger_health`.

    The event hooks only encode and queue, so they return at once. The sender's
    thread sends the batches, and `logger_flush` closes it within the deadline.
    """

    truncation_log_interval = 60.0
    """Seconds between two warnings about entries sent without their content."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sender: BatchSender | None = None
        self.truncated = 0
        """Entries whose content `encode_event` removed to fit the size limit per entry."""
        self._truncation_lock = threading.Lock()
        self._next_truncation_log = 0.0

    def encode_event(self, event: CallEvent, max_bytes: int) -> tuple[bytes, bool]:
        """Encode `event` into one entry of at most `max_bytes` bytes.

        Returns the entry and whether content was removed to fit. An entry that is
        still larger is dropped and counted by the sender.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement encode_event")

    def health_details(self) -> Mapping[str, Any]:
        """Return the fields that `logger_health` reports before the sender's counters."""
        return {}

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self.submit(event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self.submit(event)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        """Send what is queued within `timeout`; raise FlushIncomplete if some is lost."""
        if self.sender is not None:
            self.sender.close(flush_budget(timeout)).raise_if_incomplete(self.name)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any] | None:
        if self.sender is None:
            return None
        with self._truncation_lock:
            truncated = self.truncated
        return {**self.health_details(), "truncated": truncated, **self.sender.health()}

    def submit(self, event: CallEvent) -> bool:
        """Encode `event` and queue it; return False if the sender dropped it.

        Raises RuntimeError if `logger_setup` has not started the sender.
        """
        sender = self.sender
        if sender is None:
            raise RuntimeError(f"{self.name}: an event arrived before logger_setup")
        data, truncated = self.encode_event(event, sender.max_entry_bytes)
        if truncated:
            self._count_truncation(event.call_id, sender.max_entry_bytes)
        return sender.submit(data, event.call_id)

    def _count_truncation(self, call_id: str, max_bytes: int) -> None:
        with self._truncation_lock:
            self.truncated += 1
            count = self.truncated
            now = time.monotonic()
            warn = now >= self._next_truncation_log
            if warn:
                self._next_truncation_log = now + self.truncation_log_interval
        if warn:
            logger.warning("%s: the entry of call %s exceeded %d bytes and is sent without "
                           "its content (%d such entries so far)", self.name, call_id,
                           max_bytes, count)
