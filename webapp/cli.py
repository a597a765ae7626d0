"""`xtoken-align serve`: the library's CLI plus the web service.

The console script points here so that the library (`xtoken_align.cli`) never imports the web
layer; every other subcommand is the library's own.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import re
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from xtoken_align import cli
from xtoken_align.demo import cache_dir
from xtoken_align.errors import XTokenError

DEMO_STUDENT, DEMO_TEACHER = "demo:llama3", "demo:qwen3"


def add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="browse, edit and export W in a browser")
    serve.add_argument("--student", type=cli.student_source, help=cli.SOURCE_HELP)
    serve.add_argument(
        "--teacher", action="append", default=[], type=cli.teacher_source, help="teacher source; repeat for several"
    )
    serve.add_argument("--projection", action="append", default=[], help="W file per teacher, in --teacher order")
    serve.add_argument(
        "--compare", action="append", default=[], type=compare_spec, metavar="NAME=PATH",
        help="a W file of the same student and one teacher to diff against in the Diff view (repeatable)",
    )  # fmt: skip
    serve.add_argument("--workspace", help="folder for W files and the edit database (default: ./xtoken-workspace)")
    serve.add_argument("--demo", action="store_true", help=f"{DEMO_STUDENT} student, {DEMO_TEACHER} teacher")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="port to listen on (default 8000; 0: any free one)")
    serve.add_argument("--token", help="access token for non-loopback binds (default: $XTOKEN_ALIGN_TOKEN or random)")
    serve.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from webapp.app import create_app
    from webapp.settings import Settings

    student = args.student or (DEMO_STUDENT if args.demo else None)
    teachers = args.teacher or ([DEMO_TEACHER] if args.demo else [])
    if not student or not teachers:
        raise XTokenError("serve needs --student and --teacher (or --demo)")
    default = cache_dir().parent / "workspaces" / "demo" if args.demo and not args.student else Path("xtoken-workspace")
    workspace = Path(args.workspace or default).expanduser()
    token = None
    if not _loopback(args.host):
        token = args.token or os.environ.get("XTOKEN_ALIGN_TOKEN") or secrets.token_urlsafe(24)
    settings = Settings(
        workspace, student, tuple(teachers), tuple(args.projection),
        tuple(args.compare), access_token=token,
    )  # fmt: skip
    listening = bind(args.host, args.port)  # before loading anything: a busy port fails in a second
    app = create_app(settings)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{listening.getsockname()[1]}/" + (f"#token={token}" if token else "")
    print(f"workspace {workspace.resolve()}\nready: open {url}", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (handed to uvicorn), or one line saying why there is none."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.create_server((host, port), family=family)
        # Accepted connections inherit it: without, a keep-alive response written in two parts waits
        # for the client's delayed ACK (~40 ms a request).
        listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return listening
    except socket.gaierror as exc:
        raise XTokenError(f"cannot listen on host {host}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise XTokenError(f"port {port} on {host} is already in use; choose another with --port") from None
        raise XTokenError(f"cannot listen on {host} port {port}: {exc.strerror}; choose another with --port") from None


def compare_spec(text: str) -> tuple[str, str]:
    """argparse type for `--compare`: "learned=W.safetensors" -> ("learned", "W.safetensors")."""
    name, sep, path = text.partition("=")
    if not sep or not path or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH (NAME: letters, digits, _ . -)")
    return name, path


def port(text: str) -> int:
    """argparse type: a TCP port number, 0 to 65535 ("0": any free port)."""
    number = cli.non_negative_int(text)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 to 65535)")
    return number


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extend=add_serve)


if __name__ == "__main__":
    sys.exit(main())
