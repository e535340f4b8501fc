"""`python -m bench --smoke | --quick | --full`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import traceback

from bench.profiles import PROFILES, QUICK, Profile
from bench.report import DOCS, section, write_section
from bench.rows import build_rows, correctness_failures
from bench.runner import measure


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    for name, profile in PROFILES.items():
        mode.add_argument(
            f"--{name}", dest="mode", action="store_const", const=name,
            help=f"{profile.apps:,} AppReleases, {profile.scale_total:,} for memory and restart",
        )
    parser.add_argument("--workers", type=int, help="operator --workers (default: 8)")
    parser.add_argument("--no-docs", action="store_true", help=f"do not update {DOCS}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, manifests)")
    parser.set_defaults(mode=QUICK.name)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    profile: Profile = PROFILES[args.mode]
    if args.workers:
        profile = dataclasses.replace(profile, workers=args.workers)
    try:
        measurements = measure(profile, keep_files=args.keep)
    except Exception:
        traceback.print_exc()
        print(f"bench --{profile.name}: FAILED (see above)", file=sys.stderr)
        return 1
    rows = build_rows(measurements)
    text = section(measurements, rows)
    print(text)
    if profile.write_docs and not args.no_docs:
        write_section(profile.name, text)
        print(f"\nwritten to {DOCS}")
    failures = correctness_failures(measurements)
    for failure in failures:
        print(f"correctness: {failure}", file=sys.stderr)
    if failures or (args.strict and not all(row.passed for row in rows)):
        return 1
    return 0
