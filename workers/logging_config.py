"""Log lines that carry the trace and span id of the work they describe.

Why a handler filter of our own instead of ``opentelemetry-instrumentation-logging``: that
package replaces the process-wide ``LogRecord`` factory (every library's records, every test
in the process), while a filter on our one handler does the same job in a dozen lines and
touches nothing else. Records logged inside a span (an activity run by the tracing
interceptor, a cutover step, a Pulumi operation) get ``trace_id``/``span_id`` in the W3C hex
form Jaeger and Grafana search for; records outside any span get ``-``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [trace_id=%(trace_id)s span_id=%(span_id)s] "
    "%(message)s"
)
"""The worker's log line."""
NO_TRACE = "-"


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record`` (never drops it)."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = record.span_id = NO_TRACE
        return True


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to ``stream`` (default stderr) with trace ids.

    Replaces handlers this function installed before (not other handlers), so calling it
    twice does not print lines twice.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.set_name("shadowshift")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "shadowshift"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
