"""The `redrive` command line (click; rich for people, --json for machines)."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="redrive")
def main() -> None:
    """Force-run failed Cloud Tasks tasks safely, once a fix is deployed."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--grpc-port", default=8123, show_default=True, type=int, help="gRPC port.")
@click.option("--rest-port", default=8124, show_default=True, type=int, help="REST (HTTP/JSON) port.")
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=float,
    help="Speed of emulated time: 60 makes a one-minute backoff last one second.",
)
def emulator(host: str, grpc_port: int, rest_port: int, time_scale: float) -> None:
    """Run the local Cloud Tasks (and Cloud Run Admin) emulator until interrupted."""
    from redrive.emulator import serve

    serve(host=host, grpc_port=grpc_port, rest_port=rest_port, time_scale=time_scale)
