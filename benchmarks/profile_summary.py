"""Summarise a py-spy collapsed-stack profile (`py-spy record --format raw`).

    python benchmarks/profile_summary.py PROFILE.txt [--top 25] [--match TEXT]
                                         [--exclude TEXT] [--idle TEXT] [--group LABEL=TEXT]

Prints the functions with the most samples, inclusive (on the stack) and self (innermost
frame), as percentages of all samples. `--match` restricts to stacks containing TEXT.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=None)
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="drop stacks containing TEXT (e.g. '_worker (' for idle thread-pool workers)",
    )
    parser.add_argument(
        "--idle",
        action="append",
        default=[],
        help="drop samples whose innermost frame contains TEXT (a thread waiting: '_worker (', "
        "'Condition.wait')",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="LABEL=TEXT",
        help="also report the share of stacks containing TEXT under LABEL (first match wins)",
    )
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    groups = [tuple(item.split("=", 1)) for item in args.group]
    grouped: Counter[str] = Counter()
    with open(args.profile) as lines:
        for line in lines:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            if args.match and args.match not in stack:
                continue
            if any(text in stack for text in args.exclude):
                continue
            if any(text in stack.rsplit(";", 1)[-1] for text in args.idle):
                continue
            count = int(count_text)
            for label, text in groups:
                if text in stack:
                    grouped[label] += count
                    break
            else:
                grouped["(other)"] += count
            frames = [short(frame) for frame in stack.split(";")]
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            exclusive[frames[-1]] += count
    print(f"{total} samples")
    if groups:
        print("\n-- groups --")
        for label, count in grouped.most_common():
            print(f"{100 * count / total:5.1f}%  {label}")
    for title, counter in (("inclusive", inclusive), ("self", exclusive)):
        print(f"\n-- {title} --")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
