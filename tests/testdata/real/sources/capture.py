"""Capture one scrape target's exposition under the three Accept headers promotel's tests replay.

Usage: ``python capture.py TARGETS.json OUTDIR``. TARGETS.json is a list of objects with ``name``
(the capture folder), ``url``, ``exporter`` (package or library) and ``version``; each target is
fetched once per Accept variant below and ``OUTDIR/<name>/`` receives ``<variant>.body`` (the
bytes exactly as answered, uncompressed: no Accept-Encoding is sent) and ``capture.json``.
Standard library only; kept for provenance, not run by the tests.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

# What Prometheus 3 sends by default (scrape protocols OpenMetricsText1.0.0, OpenMetricsText0.0.1,
# PrometheusText1.0.0, PrometheusText0.0.4; UTF-8 names allowed). The q weights start at 0.6
# because Prometheus 3 knows five protocols (protobuf included) and counts down from their number+1.
PROM3_ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                "application/openmetrics-text;version=0.0.1;q=0.5,"
                "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
                "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
# What Debian's prometheus 2.42.0 sent, recorded off the wire by a logging target.
PROM2_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
TEXT_ACCEPT = "text/plain;version=0.0.4"

VARIANTS = {"prom3": PROM3_ACCEPT, "prom2": PROM2_ACCEPT, "text": TEXT_ACCEPT}


def capture(target: dict[str, str], out: Path, today: str) -> None:
    folder = out / target["name"]
    folder.mkdir(parents=True, exist_ok=True)
    variants = {}
    for variant, accept in VARIANTS.items():
        req = urllib.request.Request(target["url"], headers={"Accept": accept, "User-Agent": "promotel-capture"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
        (folder / f"{variant}.body").write_bytes(body)
        variants[variant] = {"accept": accept, "status": status, "content_type": ctype,
                             "body": f"{variant}.body", "bytes": len(body),
                             "sha256": hashlib.sha256(body).hexdigest()}
    meta = {"capture": target["name"], "exporter": target["exporter"], "version": target["version"],
            "request_path": "/" + target["url"].split("/", 3)[3], "captured": today,
            "notes": target.get("notes", ""), "variants": variants}
    (folder / "capture.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    targets = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    today = datetime.date.today().isoformat()
    for target in targets:
        capture(target, out, today)
        print("captured", target["name"])


if __name__ == "__main__":
    main()
