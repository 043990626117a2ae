"""Where a training step's time goes, from a py-spy profile of a running ``fit``.

Record a running training process (a reproduction run, say) for 20 seconds with py-spy (from PyPI;
it reads the process from outside and slows it little), then split the samples by what they were
doing:

    py-spy record -p PID -d 20 -r 200 -f raw -o step.txt --nonblocking
    python benchmarks/step_profile.py step.txt

A sample is counted in the first category whose marker is on its stack, in this order.
"""

from __future__ import annotations

import argparse
from collections import Counter

CATEGORIES = (  # (category, a frame marker); the first that matches a sample's stack takes it
    ("compiled graph: the kernels", "CompiledFxGraph.__call__"),
    ("compiled graph: the Python around it (Captured, dynamo, AOTAutograd)", "Captured.__call__"),
    ("optimizer: the fused Adam kernel", "_fused_adam ("),
    ("optimizer: the Python around it (scheduler hook, optimizer wrappers)", "torch/optim/"),
    ("data: the batch (indexing, dynamic binarization)", ".batch ("),
    ("checkpoints and metrics", "checkpoint ("),
    ("the rest of fit's loop", "fit ("),
)


def split(lines) -> tuple[Counter, int]:
    """Samples per category (and ``"other"``) and the total, from py-spy's raw lines ``frame;frame;... count``."""
    counts, total = Counter(), 0
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        total += int(n)
        category = next((name for name, marker in CATEGORIES if marker in stack), "other (outside fit)")
        counts[category] += int(n)
    return counts, total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", help="py-spy record -f raw output")
    args = parser.parse_args(argv)
    with open(args.raw) as f:
        counts, total = split(f)
    print(f"{total} samples")
    for name, n in counts.most_common():
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
