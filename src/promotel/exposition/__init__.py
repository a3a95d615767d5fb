"""The parse stage: exposition bytes (Prometheus text 0.0.4/1.0.0, OpenMetrics 1.0, quoted UTF-8 names where
Prometheus 3 reads them) → ``MetricFamily`` values.

``parse_exposition`` parses one exposition; ``ExpositionParser`` is the per-target parser that keeps the
target's previous scrape to reuse its work on the next one. The design is described in ``parser``, which
also lists the modules (lexical layer, the two formats, the family rules, the re-scrape engine); the names
in ``__all__`` are the package's interface.

Strict where it checks, lenient where it scrapes
------------------------------------------------

One grammar, with the family rules as a parameter, ``Strictness``:

* ``STRICT`` (the default of ``parse_exposition`` and ``ExpositionParser``, and what ``promotel lint``
  uses): OpenMetrics 1.0 and its 211 conformance cases, and the Prometheus text format's rules; the first
  rule broken raises ``ExpositionError``.
* ``SCRAPE`` (for the bridge's scrapes: ``run``, ``check``, ``map``): what Prometheus' scraper accepts. The grammar and
  the rules Prometheus' parsers enforce (model/textparse: openmetricsparse.go, promparse.go; scrape.go)
  still raise; every other rule is tolerated: the parse goes on as Prometheus would with the data, and
  the rule is recorded as a ``Leniency`` (rule id, the line of its first use, the text ``STRICT`` raises
  there, a count), read from ``ExpositionParser.leniencies`` after ``parse``: at most one per rule.

Raised under both (Prometheus refuses the scrape too): the lexical grammar (metric and label names,
quoting and escapes, values, timestamps, exemplar syntax, OpenMetrics' single spaces), invalid UTF-8, a
missing ``# EOF`` or text after it, blank lines and comments in OpenMetrics, malformed HELP/TYPE/UNIT
lines and unknown types, a UNIT that does not end the metric name, a label name twice in one series, an
empty quoted name, a second metric name in a series (see "Quoted names" below).

The rules ``SCRAPE`` tolerates (``Rule``; Prometheus' scraper enforces none of them, exemplar placement
aside before 2.43 and quoted names before 3.0), and what it does instead (escaped-name is a reading of its
own, see below):

=======================  ==========================================  ==========================================
rule                     ``STRICT`` error (example)                  ``SCRAPE``
=======================  ==========================================  ==========================================
quoted-name              quoted label name "a.b": OpenMetrics 1.0    read as Prometheus 3 reads it, whatever
                         names are unquoted; quoted (UTF-8) names    the Content-Type (see "Quoted names"
                         need escaping=allow-utf-8 in the            below); counted once per line
                         Content-Type (Prometheus text 0.0.4: …
                         need the text format version 1.0.0); only
                         where the Content-Type does not declare
                         quoted names
metadata-repeated        second HELP/TYPE/UNIT line for "a"          the last line wins, as in Prometheus'
                                                                     metadata (Prometheus text: a second TYPE
                                                                     after the family's samples is ignored,
                                                                     they were sorted by the first)
metadata-after-samples   HELP line for "a" after its samples         OpenMetrics: a new block of "a" from that
                         (Prometheus text: TYPE line … after)        line (see the names rule); Prometheus
                                                                     text: the type applies
family-unique            the name "a" is used by two metric          OpenMetrics: a sample goes to the current
                         families                                    family if it owns the name (also the
                                                                     family's own name for counter, histogram,
                                                                     gaugehistogram and info, as Prometheus 3
                                                                     counts it in), else to the latest earlier
                                                                     family owning it, else to a new family of
                                                                     type unknown (no metadata, as in
                                                                     Prometheus); a later block of a name is
                                                                     one family with the earlier one unless
                                                                     its type or unit contradicts it, then a
                                                                     family of its own (two families of one
                                                                     name); overlapping names stay apart
escaped-name             none: ``STRICT`` reads the samples as       OpenMetrics: a sample named after the
                         families of their own, of type unknown      escaped name of the current family
                         (and fails with family-unique when their    (declared by metadata lines, no sample
                         names alternate, as a counter's _total      yet) plus a suffix of its type is the
                         and _created do)                            family's, which takes that name (see
                                                                     below)
unit-type                an info metric cannot have a unit           the unit is kept
series-grouping          samples of "a" with labels … are not        kept in line order
                         consecutive
series-timestamps        some samples of this series group have a    kept in line order (Prometheus' storage
                         timestamp and some do not; timestamps go    drops, and counts, a sample out of order
                         backwards                                   or repeating a timestamp; here the
                                                                     converter decides)
bucket-le                histogram bucket "a_bucket" needs an "le"   kept (the converter drops what it cannot
                         label; invalid "le" label value             convert, and counts it)
quantile-label           summary quantile sample … needs a           kept
                         "quantile" label between 0 and 1
stateset-label           stateset sample needs a label named after   kept
                         the metric
count-value              bucket value … must be a non-negative       kept
                         integer; "a_count" must be a non-negative
                         integer
counter-value            "a_total" is a counter-like value and       kept
                         cannot be -1
gsum-value               "a_gsum" cannot be NaN                      kept
quantile-value           quantile values cannot be negative          kept
stateset-value           stateset values must be 0 or 1              kept
info-value               info values must be 1                       kept
histogram-structure      buckets … not in increasing "le" order;     kept
                         bucket counts … decrease; missing its
                         le="+Inf" bucket; _count differs from its
                         +Inf bucket; _sum without _count (and the
                         reverse); negative buckets with a _sum; a
                         negative _gsum without negative buckets
exemplar-placement       only counter _total samples and histogram   kept (Prometheus ≥ 2.43 stores exemplars
                         buckets can have exemplars                  of any series; 2.42 refused names not
                                                                     ending in _total or _bucket)
exemplar-length          exemplar labels are longer than 128         kept (Prometheus keeps the sample and its
                         characters                                  exemplar storage refuses the exemplar;
                                                                     OTLP has no such limit)
exemplar-labels          an exemplar label appears twice             the exemplar is left out, the sample kept
=======================  ==========================================  ==========================================

Each rule is checked on every scrape under both strictnesses, by the same code: where ``STRICT`` raises,
``SCRAPE`` records. A valid exposition costs the same under both (the fast paths are shared). Repeated
series in one scrape are not a parse matter under ``SCRAPE`` (Prometheus keeps the first sample of a series
and timestamp and counts the others as duplicates; the parser returns them all and the converter decides).

Quoted names
------------

Prometheus 3 asks for OpenMetrics 1.0.0 and text 1.0.0 with ``escaping=allow-utf-8`` (so does promotel), and
an exporter with names outside the legacy character sets (prometheus_client 0.23 on, client_golang) answers
them quoted, escaped as label values are: ``{"metric.name","label.name"="v"} 1``, ``metric{"label.name"="v"}
1``, ``# TYPE "metric.name" counter``. Both formats read them where Prometheus 3's parsers do (model/textparse:
openmetricsparse.go and its lexer, promparse.go; ``tokens.series_slow``): a quoted label name before ``=``, in
a series or an exemplar; a quoted string alone in a series' braces (before ``,`` or ``}``) as its metric name,
once, wherever it stands (the text format's and the OpenMetrics 2.0 draft's grammars write it first), and only
when no name precedes the braces; a quoted metric name in HELP, TYPE and UNIT lines (OpenMetrics: followed by
its single space). OpenMetrics keeps its grammar around them: no blanks, no trailing comma (OpenMetrics 1.0's
conformance suite refuses one; Prometheus 3 allows it). Two deliberate differences, both on names no exporter
writes: an empty quoted name is refused, in a metadata line too (Prometheus fails a scrape whose sample has
one, and keeps such a metadata line; the OpenMetrics 2.0 draft requires a character), and the quoted name of a
metadata line is unescaped as the samples' is (Prometheus keeps it raw, so ``\\"`` there does not meet the
samples' name).

Whether the format has quoted names is the Content-Type's to say (``tokens.detect_dialect``): Prometheus text
1.0.0 (or no version), and OpenMetrics with ``escaping=allow-utf-8``. OpenMetrics 1.0 itself has none; the
parameter declares Prometheus' UTF-8 name syntax in it, as the text format's version 1.0.0 does. There both
strictnesses read them and report nothing (``promotel lint`` given the Content-Type accepts the body), and a
quoted series costs what any other does on a re-scrape (tokenized once, then matched by position).
Elsewhere (OpenMetrics without the parameter, or recognised by its ``# EOF``; text 0.0.4) a quoted name
breaks ``Rule.QUOTED_NAME``: ``STRICT`` refuses it, ``SCRAPE`` reads it all the same, as Prometheus 3 does
whatever the Content-Type (Prometheus 2 refuses it), and reports the rule; such a line takes the careful path
on every scrape, so that each scrape reports it.

One rule is not a tolerance but a reading of ``SCRAPE``'s own, applied only under ``SCRAPE``:
**escaped-name**. prometheus_client (0.23 on; 0.26 in ``tests/testdata/real``), asked for OpenMetrics without
``escaping=allow-utf-8`` (what Prometheus 2 and promotel send), answers ``escaping=underscores`` and declares
``# TYPE vllm:x counter`` but writes the samples ``vllm_x_total``: it escapes sample names with the label-name
characters, which have no ``:`` (prometheus/client_python issue 1177). Read literally, as ``STRICT`` and
Prometheus read it (2.42 by name; 3 by ``scrape.isSeriesPartOfFamily``, a prefix match as written), the
counter has no samples and ``vllm_x_total`` is an untyped family without metadata: counters, histograms, Infos
and Enums lose their type, and the OTLP names and types would depend on the negotiated format. ``SCRAPE``
reads the samples as the family's, and the family takes the escaped name (the samples' name, under which
Prometheus stores them; the state label of such an Enum is escaped alike), so the answer reads as if its
metadata had been escaped too; the leniency (counted once per family) names the first sample and the declared
name. It is the one rule with which ``SCRAPE`` reports a leniency on a body ``STRICT`` accepts (escaped
samples that do not alternate, one gauge series say, are valid OpenMetrics read literally) and returns other
families than ``STRICT`` (the same samples, in the same order), and the one deliberate difference from the
metadata Prometheus keeps (``tests/e2e/test_real_prometheus.py``). It runs when a sample's family is looked up
(a new sample name after a metadata line), never on the fast path.
"""

from promotel.exposition.parser import ExpositionParser, detect_format, parse_exposition
from promotel.exposition.rules import Leniency, Rule, Strictness

__all__ = ["ExpositionParser", "Leniency", "Rule", "Strictness", "detect_format", "parse_exposition"]
