"""Top frames of a py-spy profile in collapsed-stack form (`py-spy record --format raw`).

`python -m bench.profile_summary profile.txt --top 15` prints, for the most sampled frames,
their share of samples inclusive (anywhere on the stack) and exclusive (on top of it).
"""

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    """Sample counts per stack, outermost frame first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def frame_shares(stacks: Counter[tuple[str, ...]]) -> tuple[Counter[str], Counter[str], int]:
    """Samples per frame inclusive and exclusive, and the total number of samples."""
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        for frame in dict.fromkeys(stack):
            inclusive[frame] += count
        exclusive[stack[-1]] += count
    return inclusive, exclusive, sum(stacks.values())


def top_frames(path: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """The `top` frames by inclusive and by exclusive share of samples (percent)."""
    inclusive, exclusive, total = frame_shares(read_stacks(path))
    share = 100 / max(total, 1)
    return {
        "inclusive": [(frame, count * share) for frame, count in inclusive.most_common(top)],
        "exclusive": [(frame, count * share) for frame, count in exclusive.most_common(top)],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, list[tuple[str, float]]]:
    """Print the top frames of the profile named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    frames = top_frames(args.profile, args.top)
    for kind, rows in frames.items():
        print(f"-- {kind}")
        for frame, percent in rows:
            print(f"{percent:5.1f}%  {frame}")
    return frames


if __name__ == "__main__":
    main()
