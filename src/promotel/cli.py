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
    "targets": "promotel.commands.targets:cli_targets",
    "mappings": "promotel.commands.map:cli_mappings",
    "simulate": "promotel.simulate:cli_simulate",
    "demo": "promotel.commands.demo:cli_demo",
    "top": "promotel.commands.top:cli_top",
}


# One meaning per exit status for every command (the README's "Command line" section repeats it).
EXIT_STATUS = """exit status:
  0    success
  1    something failed that is neither the command line nor the config: a scrape or an export
       (run --once), a probe (check), an invalid or unreadable input file (lint, map), a health
       listener that cannot be read (top --once)
  2    the command line or the config is wrong: invalid arguments, an unknown mapping, an invalid
       config or one refused for its permissions (run, check, map, demo, top)
  130  interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promotel",
        description="Scrape Prometheus/OpenMetrics endpoints, map them onto OpenTelemetry, push OTLP.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"promotel {_version()}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="one line per event, as text or as JSON (default: text)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="the least severe events to log (default: info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                help="'promotel COMMAND --help' describes each")

    p = sub.add_parser("run", help="run the bridge (the service)",
                       description="Scrape every configured source on its interval and push OTLP to every "
                                   "exporter until SIGTERM; SIGHUP reloads the config.", epilog=EXIT_STATUS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="YAML config file with at least one source (without it only the "
                                          "OTEL_EXPORTER_OTLP_* variables are read, which configure no source)")
    p.add_argument("--once", action="store_true",
                   help="one scrape+export round of every target, then exit (non-zero if anything failed)")
    p.add_argument("--shard", metavar="INDEX/COUNT",
                   help="scrape only this shard of the targets (default: from PROMOTEL_SHARD or the pod ordinal)")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")

    p = sub.add_parser("check", help="validate the config and probe every target and exporter",
                       description="List every problem of the config at once, then scrape each source once and "
                                   "send an empty OTLP request to each exporter.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="YAML config file with at least one source (without it only the "
                                          "OTEL_EXPORTER_OTLP_* variables are read, which configure no source)")
    p.add_argument("--offline", action="store_true", help="validate only; do not contact targets or exporters")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")

    p = sub.add_parser("lint", help="validate exposition files",
                       description="Check Prometheus text and OpenMetrics files with the parser the bridge uses: "
                                   "one 'FILE:LINE: message' line per invalid file.")
    p.add_argument("--content-type", dest="content_type",
                   help="e.g. 'application/openmetrics-text' (default: OpenMetrics if the text ends with '# EOF')")
    p.add_argument("files", nargs="+", metavar="FILE", help="exposition file, or - for stdin")

    p = sub.add_parser("map", help="map expositions offline and print what a backend would receive",
                       description="Run saved scrapes of one target through a mapping (and, with -c, a configured "
                                   "source and exporter) and print the OTLP a backend would receive.")
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
    p.add_argument("--format", choices=("otlp-json", "table"), default="otlp-json",
                   help="one OTLP/JSON request per scrape per line (default), or a table for reading")
    p.add_argument("--content-type", dest="content_type", help="as for lint")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="successive scrapes of one target, oldest first; - for stdin")

    p = sub.add_parser("targets", help="run discovery once and list every target of every source",
                       description="Run every source's service discovery once and list each target with its URL, "
                                   "final labels, discovered labels and state (active, or dropped by "
                                   "relabel_configs), as Prometheus's targets page does.",
                       epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="a table for reading (default), or JSON: a list of objects with source, url, labels, "
                        "discovered_labels and state")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")

    p = sub.add_parser("mappings", help="show what each source family becomes",
                       description="List the installed mapping plugins, or show what one of them makes of each "
                                   "family and label.")
    p.add_argument("name", nargs="?", help="mapping plugin name (default: list the installed ones)")

    p = sub.add_parser("simulate", help="serve a realistic Baseten or SambaNova metrics endpoint",
                       description="Serve simulated Baseten or SambaNova metrics at /metrics until Ctrl-C, with "
                                   "the real endpoint's families, labels, auth and rate limit.")
    p.add_argument("source", choices=("baseten", "sambanova"), help="which endpoint to simulate")
    p.add_argument("--port", type=int, default=0, help="TCP port to listen on (default: a free one, printed)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--api-key", dest="api_key", help="require this key (Baseten: Authorization: Api-Key KEY)")
    p.add_argument("--duration-as", dest="duration_as", choices=("histogram", "summary"), default="histogram",
                   help="SambaNova: expose response_duration_ms as a histogram or a summary")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible traffic")

    p = sub.add_parser("demo", help="simulators + bridge + a built-in sink, with a live view",
                       description="Start both simulators, a bridge scraping them and a built-in OTLP sink, and "
                                   "show what arrives.")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--otlp-endpoint", dest="otlp_endpoint", help="also send the data to this OTLP endpoint")

    p = sub.add_parser("top", help="watch a running bridge: sources and exporters, redrawn in place",
                       description="Read the /status of a running bridge's health listener and show its sources "
                                   "(up, last scrape, duration, samples, series, error) and exporters (state, "
                                   "queue, persisted, sent, failed, dropped, last success) in a table redrawn in "
                                   "place.", epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="the health listener, e.g. http://127.0.0.1:8888 (default: health.listen of -c, "
                                 "else http://127.0.0.1:8888)")
    p.add_argument("-c", "--config", help="YAML config file of the bridge: watch its health.listen")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default: 2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit (for scripts)")
    p.add_argument("--allow-insecure-config-permissions", action="store_true",
                   help="only warn (instead of refusing) when a config file holding secrets is world-readable")
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
