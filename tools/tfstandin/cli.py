"""Command line of the stand-in.

    python -m tfstandin check DIR [--var K=V ...] [--var-file F ...] [--no-plan]
        init, validate and plan DIR against the stand-in providers; exit 1 on any failure.
    python -m tfstandin serve [--folder DIR]
        serve the providers and print the TF_REATTACH_PROVIDERS value; stop with SIGTERM/SIGINT.

Started by Terraform itself (go-plugin's magic cookie in the environment: a filesystem mirror or
dev_overrides entry whose executable runs `python -m tfstandin`), it serves the one provider named
by TFSTANDIN_PROVIDER (google, archive or time) and prints go-plugin's handshake line. Terraform's
automatic mTLS is not supported there: set TF_DISABLE_PLUGIN_TLS=1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tfstandin import server


def _plugin_mode() -> int:
    if os.environ.get("PLUGIN_CLIENT_CERT"):
        print(
            "tfstandin: Terraform asked for mTLS; run it with TF_DISABLE_PLUGIN_TLS=1",
            file=sys.stderr,
        )
        return 1
    name = os.environ.get("TFSTANDIN_PROVIDER", "google")
    address = {"google": server.GOOGLE, "archive": server.ARCHIVE, "time": server.TIME}[name]
    providers = server.build_providers()
    folder = Path(tempfile.mkdtemp(prefix="tfstandin-plugin-"))
    served = server.serve_one(address, providers[address], folder / "plugin.sock")
    print(server.handshake_line(served), flush=True)
    served.stopped.wait()
    return 0


def _serve(folder: Path | None, workdir: Path) -> int:
    folder = folder or Path(tempfile.mkdtemp(prefix="tfstandin-"))
    served = server.serve_all(folder, workdir=workdir.resolve())
    print(server.reattach_value(served), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for s in served:
        s.stop()
    return 0


def _check(args: argparse.Namespace) -> int:
    from tfstandin.check import check

    variables = dict(v.split("=", 1) for v in args.var)
    status = 0
    for directory in args.directories:
        result = check(
            Path(directory),
            variables=variables,
            var_files=[Path(f) for f in args.var_file],
            plan=not args.no_plan,
        )
        for step in result.steps:
            verdict = "ok" if step.returncode == 0 else f"FAILED ({step.returncode})"
            summary = next(
                (line for line in step.output.splitlines() if line.startswith("Plan:")), ""
            )
            print(
                f"tfstandin: {directory}: terraform {step.name} {verdict} in {step.seconds:.1f}s"
                + (f" ({summary})" if summary else "")
            )
            if step.returncode != 0 or args.verbose:
                print(step.output)
        if not result.ok:
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(server.MAGIC_COOKIE_KEY) == server.MAGIC_COOKIE_VALUE:
        return _plugin_mode()
    parser = argparse.ArgumentParser(prog="tfstandin", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check_p = sub.add_parser("check", help="init, validate and plan configurations")
    check_p.add_argument("directories", nargs="+")
    check_p.add_argument("--var", action="append", default=[], help="K=V, passed to plan")
    check_p.add_argument("--var-file", action="append", default=[])
    check_p.add_argument("--no-plan", action="store_true", help="init and validate only")
    check_p.add_argument("--verbose", action="store_true", help="print every step's output")
    serve_p = sub.add_parser("serve", help="serve the providers for TF_REATTACH_PROVIDERS")
    serve_p.add_argument("--folder", type=Path, help="where the unix sockets go")
    serve_p.add_argument(
        "--workdir",
        type=Path,
        default=Path.cwd(),
        help="the folder Terraform will run in (relative paths resolve there)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.folder, args.workdir)
    return _check(args)
