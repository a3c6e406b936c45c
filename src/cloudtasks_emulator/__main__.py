"""`python -m cloudtasks_emulator`: the `cloudtasks-emulator` command (and `redrive emulator`)."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from cloudtasks_emulator.model import QUEUE_REUSE_DELAY_S
from cloudtasks_emulator.quota import Quotas
from cloudtasks_emulator.server import serve
from cloudtasks_emulator.service import DEFAULT_LOCATIONS


def _quota(value: str) -> int | None:
    """A per-minute quota: a count >= 0, or "none"/"unlimited" to lift it."""
    if value.lower() in ("none", "unlimited", "lifted"):
        return None
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError("a quota is a count >= 0, or 'none'")
    return count


def parser(prog: str = "cloudtasks-emulator") -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog=prog,
        description="Run the local Cloud Tasks (v2, v2beta3; gRPC and REST) and Cloud Run Admin "
        "emulator until interrupted.",
    )
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    cli.add_argument("--grpc-port", type=int, default=8123, help="gRPC port (%(default)s)")
    cli.add_argument("--rest-port", type=int, default=8124, help="REST port (%(default)s)")
    cli.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="speed of emulated time: 60 makes a one-minute backoff last one second (%(default)s)",
    )
    production = Quotas()
    quotas = cli.add_argument_group(
        "quotas", "per project and per minute of emulated time, as the real service enforces them"
    )
    quotas.add_argument(
        "--quota-run-per-min",
        type=_quota,
        default=production.run_per_min,
        help="RunTask calls (%(default)s; 'none' lifts it)",
    )
    quotas.add_argument(
        "--quota-list-per-min",
        type=_quota,
        default=production.list_per_min,
        help="ListTasks, ListQueues and ListLocations calls (%(default)s)",
    )
    quotas.add_argument(
        "--quota-api-per-min",
        type=_quota,
        default=production.api_per_min,
        help="every Cloud Tasks call (%(default)s)",
    )
    quotas.add_argument(
        "--lift-quotas", action="store_true", help="no quota at all (overrides the three above)"
    )
    cli.add_argument(
        "--dedup-window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a task name stays taken after the task is gone (%(default)s)",
    )
    cli.add_argument(
        "--queue-reuse-delay",
        type=float,
        default=QUEUE_REUSE_DELAY_S,
        metavar="SECONDS",
        help="how long a deleted queue's name stays taken (%(default)s: 7 days)",
    )
    cli.add_argument(
        "--app-engine-host",
        default=None,
        metavar="URL",
        help="where App Engine tasks go, e.g. http://127.0.0.1:8080 (none: they fail)",
    )
    cli.add_argument(
        "--oidc-key",
        default=None,
        metavar="PEM_FILE",
        help="RSA private key that signs OIDC tokens (default: one generated at start)",
    )
    cli.add_argument(
        "--locations",
        default=",".join(DEFAULT_LOCATIONS),
        metavar="IDS",
        help="comma-separated location ids ListLocations shows (default: the Cloud Tasks regions)",
    )
    return cli


EXIT_SETUP = 4
"""The exit code when the emulator cannot start here (a port taken): as `redrive`'s."""


def port_problem(host: str, port: int, option: str) -> str | None:
    """Why the emulator could not listen on host:port (None: it can; port 0 is any free port)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        return f"cannot listen on {host}:{port} ({option}): {err}"
    failures: list[OSError] = []
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
                probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} ({option}) is already in use: stop the program "
                    f"listening there, or pass another {option} (0 picks a free port)"
                )
            failures.append(err)
    if failures and len(failures) == len(infos):  # not one of the host's addresses can be used
        return f"cannot listen on {host}:{port} ({option}): {failures[0].strerror or failures[0]}"
    return None


def _refuse(prog: str, message: str) -> NoReturn:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_SETUP)


def main(argv: Sequence[str] | None = None, prog: str = "cloudtasks-emulator") -> None:
    args = parser(prog).parse_args(argv)
    if args.grpc_port and args.grpc_port == args.rest_port:
        _refuse(prog, f"--grpc-port and --rest-port are both {args.grpc_port}: give each its own")
    for port, option in ((args.grpc_port, "--grpc-port"), (args.rest_port, "--rest-port")):
        problem = port_problem(args.host, port, option)
        if problem is not None:
            _refuse(prog, problem)
    quotas = (
        Quotas.lifted()
        if args.lift_quotas
        else Quotas(
            run_per_min=args.quota_run_per_min,
            list_per_min=args.quota_list_per_min,
            api_per_min=args.quota_api_per_min,
        )
    )
    try:
        _serve(args, quotas)
    except (OSError, RuntimeError) as err:  # a port taken between the check and the bind
        if "bind" not in str(err).lower():
            raise
        _refuse(prog, f"cannot listen on {args.host}: {err}")


def _serve(args: argparse.Namespace, quotas: Quotas) -> None:
    serve(
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        time_scale=args.time_scale,
        dedup_window_s=args.dedup_window,
        app_engine_host=args.app_engine_host,
        quotas=quotas,
        queue_reuse_delay_s=args.queue_reuse_delay,
        oidc_key_file=args.oidc_key,
        locations=[loc.strip() for loc in args.locations.split(",") if loc.strip()],
    )


if __name__ == "__main__":
    main()
