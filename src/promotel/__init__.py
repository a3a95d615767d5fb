"""promotel: Prometheus/OpenMetrics endpoints → OpenTelemetry (OTLP), with semantic conventions.

The public Python API is deliberately small (pinned by ``tests/test_api.py``)::

    from promotel import parse_exposition, ExpositionError
    families = parse_exposition(data, content_type=None)
"""

from promotel import _moved
from promotel.errors import ExpositionError, PromotelError
from promotel.exposition import parse_exposition

_moved.install()

__version__ = "0.1.0"

__all__ = ["ExpositionError", "PromotelError", "__version__", "parse_exposition"]
