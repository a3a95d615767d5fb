"""deploy/container: the Dockerfile is multi-stage, runs unprivileged, checks its own health and
starts promotel with a command line promotel accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from promotel.cli import build_parser
from support.paths import REPO

DOCKERFILE = REPO / "deploy" / "container" / "Dockerfile"
CONTAINER_README = REPO / "deploy" / "container" / "README.md"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instr in instructions(text):
        if instr[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instr)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_parser_joins_continuations() -> None:
    got = instructions("FROM a AS b\n# c\nRUN x \\\n  # inside\n  && y\nUSER 1\n")
    assert got == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1")]


def test_multi_stage(dockerfile: str) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    builder, final = all_stages[0], all_stages[-1]
    assert re.fullmatch(r"\S+ AS builder", builder[0][1], re.IGNORECASE)
    arg_default = dict(a.split("=", 1) for w, a in instructions(dockerfile) if w == "ARG" and "=" in a)
    assert arg_default["PYTHON_IMAGE"] == "python:3.12-slim"
    assert final[0][1] == "${PYTHON_IMAGE}"
    assert any(w == "RUN" and "pip install ." in a for w, a in builder)
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=builder /opt/promotel /opt/promotel"], "the final stage copies the venv only"


def test_final_stage_has_no_build_tools(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    text = " ".join(a for w, a in final if w == "RUN")
    for tool in ("gcc", "build-essential", "g++", "make ", "apt-get install", "pip install", "curl", "wget"):
        assert tool not in text, f"final stage installs {tool.strip()!r}"


def test_runs_as_non_root(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = [a for w, a in final if w == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    # the user is created with that uid
    assert any(w == "RUN" and f"--uid {user}" in a for w, a in final)


def final_env(dockerfile: str) -> dict[str, str]:
    """The final stage's ENV variables (``ENV A=1 B=2`` form, as the Dockerfile writes them)."""
    env: dict[str, str] = {}
    for word, args in stages(dockerfile)[-1]:
        if word == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {args}: write KEY=value"
                env[key] = value
    return env


HEALTH_URL_VAR = "PROMOTEL_HEALTH_URL"


def test_healthcheck_entrypoint_cmd_volume(dockerfile: str) -> None:
    final = {w: a for w, a in stages(dockerfile)[-1]}
    health = final["HEALTHCHECK"]
    assert '"python"' in health and "curl" not in health
    assert re.search(r"--timeout=\d+s", health) and re.search(r"--interval=\d+s", health)
    assert json.loads(final["ENTRYPOINT"]) == ["promotel"]
    cmd = json.loads(final["CMD"])
    assert cmd == ["run", "-c", "/etc/promotel/promotel.yaml"]
    args = build_parser().parse_args(cmd)
    assert (args.command, args.config) == ("run", "/etc/promotel/promotel.yaml")
    assert final["VOLUME"] == "/var/lib/promotel"
    assert final_env(dockerfile)["PROMOTEL_STATE_DIR"] == "/var/lib/promotel"


def healthcheck_probe(dockerfile: str) -> str:
    """The Python the HEALTHCHECK runs (its exec form is ``python -c CODE``)."""
    health = {w: a for w, a in stages(dockerfile)[-1]}["HEALTHCHECK"]
    exec_form = json.loads(health[health.index("CMD") + 3:].strip())
    assert exec_form[:2] == ["python", "-c"] and len(exec_form) == 3
    code: str = exec_form[2]
    return code


def test_healthcheck_url_follows_the_configuration(dockerfile: str) -> None:
    """The probed URL is a variable with the documented listen address as default, not a literal."""
    code = healthcheck_probe(dockerfile)
    assert f"os.environ[{HEALTH_URL_VAR!r}]" in code
    assert not re.search(r"https?://|127\.0\.0\.1|:\d{2,5}\b", code), f"a hard-coded address in {code!r}"
    default = urlsplit(final_env(dockerfile)[HEALTH_URL_VAR])
    assert (default.scheme, default.hostname, default.path) == ("http", "127.0.0.1", "/healthz")
    exposed = {w: a for w, a in stages(dockerfile)[-1]}["EXPOSE"]
    assert str(default.port) == exposed
    # The README documents the variable, its default, and a health.listen on that port.
    readme = CONTAINER_README.read_text()
    assert f"`{HEALTH_URL_VAR}`" in readme and f"`{default.geturl()}`" in readme
    listens = re.findall(r'health: \{listen: "([^"]+)"\}', readme)
    assert listens and all(int(listen.rpartition(":")[2]) == default.port for listen in listens)


def test_healthcheck_probe_follows_the_health_endpoint(dockerfile: str) -> None:
    """Run the HEALTHCHECK's Python against a real server: exit 0 on 200, non-zero on 503, on no server,
    and without the variable (the URL comes from nowhere else)."""
    probe = healthcheck_probe(dockerfile)
    answer = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer["status"] if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    base_env = {k: v for k, v in os.environ.items() if k != HEALTH_URL_VAR}

    def run(url: str | None) -> int:
        env = base_env if url is None else {**base_env, HEALTH_URL_VAR: url}
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=20,
                              check=False).returncode

    url = f"http://127.0.0.1:{port}/healthz"
    try:
        assert run(url) == 0
        assert run(None) != 0
        assert run(f"http://127.0.0.1:{port}/elsewhere") != 0   # 404: the path is the variable's too
        answer["status"] = 503
        assert run(url) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert run(url) != 0   # nothing listening


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "ignore everything, then allow what the build copies"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for w, a in instructions(DOCKERFILE.read_text()):
        if w == "COPY" and not a.startswith("--from"):
            copied.update(a.split()[:-1])
    assert copied == allowed == {"pyproject.toml", "README.md", "src"}
