"""Prometheus-style targets: discovery and relabeling.

For now this package holds only the relabeling engine, :mod:`promotel.discovery.relabel`
(``relabel_configs`` applied to discovered targets and ``metric_relabel_configs`` applied to every
series, with Prometheus's semantics); nothing else in promotel uses it yet. Import from the module:
the package does not re-export its names, so that ``promotel.discovery.relabel`` stays the module
and is not shadowed by the function of the same name.
"""
