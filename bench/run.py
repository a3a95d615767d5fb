"""Run every benchmark in this folder, one after the other, each in its own process.

    python bench/run.py            # all of them (several minutes on 2 cores)
    python bench/run.py parse      # only those whose name contains "parse"

Figures and the machine they were measured on are recorded in bench/README.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_parse.py", "bench_round.py", "bench_rss.py", "bench_churn.py"]


def main(argv: list[str]) -> int:
    wanted = [b for b in BENCHES if not argv or any(a in b for a in argv)]
    failed = 0
    for name in wanted:
        path = HERE / name
        if not path.exists():
            print(f"== {name}: missing", flush=True)
            failed += 1
            continue
        print(f"== {name}", flush=True)
        failed += subprocess.call([sys.executable, str(path)], cwd=HERE) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
