"""The ``promotel`` command line. The commands and flags are a stable contract (see the README).

Each command lives in the module of the stage it belongs to; this file only declares the
arguments and dispatches, importing lazily so ``promotel lint`` does not pay for grpc.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command → "module:function"; each function takes the parsed argparse.Namespace and returns an exit code.
_COMMANDS = {
    "run": "promotel.service:cli_run",
    "check": "promotel.commands.check:cli_check",
    "lint": "promotel.commands.lint:cli_lint",
    "map": "promotel.commands.map:cli_map",
    "mappings": "promotel.commands.map:cli_mappings",
    "simulate": "promotel.simulate:cli_simulate",
    "demo": "promotel.commands.demo:cli_demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promotel",
        description="Scrape Prometheus/OpenMetrics endpoints, map them onto OpenTelemetry, push OTLP.",
    )
    parser.add_argument("--version", action="version", version=f"promotel {_version()}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="one line per event, as text or as JSON (default: text)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the bridge (the service)")
    p.add_argument("-c", "--config", help="YAML config file (default: OTEL_EXPORTER_OTLP_* variables)")
    p.add_argument("--once", action="store_true",
                   help="one scrape+export round of every target, then exit (non-zero if anything failed)")
    p.add_argument("--shard", metavar="INDEX/COUNT",
                   help="scrape only this shard of the targets (default: from PROMOTEL_SHARD or the pod ordinal)")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")

    p = sub.add_parser("check", help="validate the config and probe every target and exporter")
    p.add_argument("-c", "--config", help="YAML config file (default: OTEL_EXPORTER_OTLP_* variables)")
    p.add_argument("--offline", action="store_true", help="validate only; do not contact targets or exporters")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")

    p = sub.add_parser("lint", help="validate exposition files")
    p.add_argument("--content-type", dest="content_type",
                   help="e.g. 'application/openmetrics-text' (default: OpenMetrics if the text ends with '# EOF')")
    p.add_argument("files", nargs="+", metavar="FILE", help="exposition file, or - for stdin")

    p = sub.add_parser("map", help="map expositions offline and print what a backend would receive")
    p.add_argument("--mapping", help="mapping plugin name (see 'promotel mappings'); not needed with -c")
    p.add_argument("-c", "--config", help="YAML config file: map as the configured source --source would")
    p.add_argument("--source", metavar="NAME",
                   help="with -c: the source whose mapping, overrides, users policy and resource apply "
                        "(default: the only source)")
    p.add_argument("--exporter", metavar="NAME",
                   help="with -c: prepare as this exporter would (temporality, summaries, limits)")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")
    p.add_argument("--temporality", choices=("cumulative", "delta"), default="cumulative",
                   help="without --exporter: cumulative (default) or delta, as an OTLP exporter would send")
    p.add_argument("--format", choices=("otlp-json", "table"), default="otlp-json")
    p.add_argument("--content-type", dest="content_type", help="as for lint")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="successive scrapes of one target, oldest first; - for stdin")

    p = sub.add_parser("mappings", help="show what each source family becomes")
    p.add_argument("name", nargs="?", help="mapping plugin name (default: list the installed ones)")

    p = sub.add_parser("simulate", help="serve a realistic Baseten or SambaNova metrics endpoint")
    p.add_argument("source", choices=("baseten", "sambanova"))
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one, printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", dest="api_key", help="require this key (Baseten: Authorization: Api-Key KEY)")
    p.add_argument("--duration-as", dest="duration_as", choices=("histogram", "summary"), default="histogram",
                   help="SambaNova: expose response_duration_ms as a histogram or a summary")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible traffic")

    p = sub.add_parser("demo", help="simulators + bridge + a built-in sink, with a live view")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--otlp-endpoint", dest="otlp_endpoint", help="also send the data to this OTLP endpoint")
    return parser


def _version() -> str:
    from promotel import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from promotel.logs import quiet_grpc_core, setup_logging

    quiet_grpc_core()    # before any command imports grpc, which reads it once
    setup_logging(args.log_format, args.log_level)
    module_name, func_name = _COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        code: int = func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
