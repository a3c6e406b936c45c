"""`python -m cloudtasks_emulator`: the `cloudtasks-emulator` command (and `redrive emulator`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cloudtasks_emulator.server import serve


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
    return cli


def main(argv: Sequence[str] | None = None, prog: str = "cloudtasks-emulator") -> None:
    args = parser(prog).parse_args(argv)
    serve(
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        time_scale=args.time_scale,
    )


if __name__ == "__main__":
    main()
