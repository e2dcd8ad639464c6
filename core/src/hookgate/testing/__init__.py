"""The test kit for logger plugin authors.

Installing hookgate-core registers a pytest plugin with these fixtures:

- `hookgate_registry`: a fresh `PluginRegistry` that has loaded nothing;
- `hookgate_harness`: a `DispatchHarness` on that registry, closed after the test;
- `make_event`: builds realistic success and failure events;
- `recording_logger`: a `RecordingLogger`, the reference in-memory logger;
- `start_receiver`: starts `hookgate.testing.receiver.LoopbackReceiver` subclasses,
  loopback stand-ins for a logging backend, and stops them after the test.

A typical test:

    def test_audit_log_records_success(hookgate_harness, make_event):
        audit = AuditLog()
        hookgate_harness.add(audit, "audit", settings={"path": "/tmp/audit"})
        hookgate_harness.send(make_event())
        hookgate_harness.drain()
        assert audit.lines == 1
"""

from hookgate.testing.events import make_event
from hookgate.testing.harness import DispatchHarness
from hookgate.testing.recorder import RecordingLogger

__all__ = ["DispatchHarness", "RecordingLogger", "make_event"]
