"""The parse stage: exposition bytes (Prometheus text 0.0.4/1.0.0, OpenMetrics 1.0) → ``MetricFamily`` values.

``parse_exposition`` parses one exposition; ``ExpositionParser`` is the per-target parser that keeps the
target's previous scrape to reuse its work on the next one. The design is described in ``parser``, which
also lists the modules (lexical layer, the two formats, the family rules, the re-scrape engine); only the
three names below are the package's interface.
"""

from promotel.exposition.parser import ExpositionParser, detect_format, parse_exposition

__all__ = ["ExpositionParser", "detect_format", "parse_exposition"]
