"""Documentation generated from the Terraform module.

python -m tfdocs readme terraform [--check]
    the inputs/outputs tables of terraform/README.md, from variables.tf and outputs.tf
python -m tfdocs dashboard [--check]
    terraform/docs/dashboard.json, the dashboard the example plans (needs terraform: the
    stand-in providers plan it), and terraform/docs/dashboard.svg rendered from that JSON;
    --check re-renders the SVG from the committed JSON and compares (no terraform needed)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfdocs import dashboard, inputs

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfdocs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    readme_p = sub.add_parser("readme")
    readme_p.add_argument("module", type=Path)
    readme_p.add_argument("--check", action="store_true")
    dash_p = sub.add_parser("dashboard")
    dash_p.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "readme":
        readme = args.module / "README.md"
        text = inputs.update(readme, args.module)
        if args.check:
            if text != readme.read_text():
                print(f"tfdocs: {readme} is not current: run python -m tfdocs readme {args.module}")
                return 1
            print(f"tfdocs: {readme} inputs and outputs are current")
            return 0
        readme.write_text(text)
        return 0

    docs = ROOT / "terraform" / "docs"
    if args.check:
        svg = dashboard.render(dashboard.load(docs / "dashboard.json"))
        if svg != (docs / "dashboard.svg").read_text():
            print("tfdocs: terraform/docs/dashboard.svg is not current: python -m tfdocs dashboard")
            return 1
        print("tfdocs: terraform/docs/dashboard.svg is rendered from dashboard.json")
        return 0
    planned = dashboard.plan_example_dashboard()
    (docs / "dashboard.json").write_text(dashboard.dumps(planned))
    (docs / "dashboard.svg").write_text(dashboard.render(planned))
    print("tfdocs: wrote terraform/docs/dashboard.json and dashboard.svg", file=sys.stderr)
    return 0
