"""``clm``: the command line of the project (demo now; registry commands follow)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the pipeline offline on the bundled real sample")
    demo.add_argument("--days", type=int, default=90, help="how many of the sample's last days")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from clm_assets.demo import run_demo

        return run_demo(days=args.days)
    return 2


if __name__ == "__main__":
    sys.exit(main())
