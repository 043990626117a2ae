"""Compare two scored reproduction runs image by image: their test NLL and -ELBO on the same test
images, with the paired standard error of the difference.

Both rows of the results table carry a standard error of about 0.2 nats, but most of it is which
images are hard, which is the same for both runs: the error of their difference is far smaller than
the two errors combined. ``reproduce.py`` keeps each scored run's per-image values in
``benchmarks/results/scores/RUN.pt``; this script pairs two of them. A side may name several runs
joined by ``+`` (the seeds of one preset): it is then their mean, image by image, so the difference is
the seed-averaged one.

    python benchmarks/paired.py vamp-1l vamp-1l-standard
    python benchmarks/paired.py vamp-1l-code-static+vamp-1l-code-static-s1 \
        vamp-1l-standard-code-static+vamp-1l-standard-code-static-s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from inference import Difference, paired_difference

HERE = Path(__file__).resolve().parent


def load_scores(results: Path, run: str) -> dict:
    """A run's per-image scores (see ``reproduce.save_scores``), or an error that says how to make them."""
    path = Path(results) / "scores" / f"{run}.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"no per-image scores of {run!r} in {path.parent}: runs scored before they were kept have none. "
            f"Score it again with `python benchmarks/reproduce.py PRESET --resume --compile` (it needs the run's "
            f"folder in runs/reproduce or its stash), or name a run that has them: "
            f"{', '.join(sorted(p.stem for p in path.parent.glob('*.pt'))) or 'none yet'}")
    return torch.load(path)


def load_mean_scores(results: Path, runs: str) -> dict:
    """The scores of ``runs`` (one name, or several joined by ``+``), averaged image by image; the runs
    must have been scored on the same test images."""
    names = runs.split("+")
    scores = [load_scores(results, name) for name in names]
    for name, other in zip(names[1:], scores[1:]):
        _same_images(names[0], scores[0], name, other)
    return {**scores[0], **{key: torch.stack([s[key].double() for s in scores]).mean(0) for key in ("log_px", "elbo")}}


def _same_images(a: str, first: dict, b: str, second: dict) -> None:
    for key in ("test_seed", "limit"):
        if first[key] != second[key]:
            raise ValueError(f"{a} and {b} were scored on different test images ({key} {first[key]} against "
                             f"{second[key]}): a paired difference needs the same images")


def compare(results: Path, a: str, b: str) -> dict[str, Difference]:
    """``{"test_nll": ..., "test_neg_elbo": ...}``: run ``a``'s value minus run ``b``'s (negative: ``a``
    is better), each with its paired error over the same images. ``a`` and ``b`` may each join several
    runs with ``+``: their mean (:func:`load_mean_scores`)."""
    first, second = load_mean_scores(results, a), load_mean_scores(results, b)
    _same_images(a, first, b, second)
    return {"test_nll": paired_difference(-first["log_px"], -second["log_px"]),
            "test_neg_elbo": paired_difference(-first["elbo"], -second["elbo"])}


def reference(results: Path, runs: str) -> float:
    """The papers' test NLL for ``runs`` (joined by ``+``: they must share it)."""
    values = {json.loads((Path(results) / f"{run}.json").read_text())["reference"]["test_nll"] for run in runs.split("+")}
    if len(values) > 1:
        raise ValueError(f"the runs of {runs} reproduce different rows (papers' values {sorted(values)}): "
                         f"average only the seeds of one preset")
    return values.pop()


def report(results: Path, a: str, b: str) -> str:
    """The comparison in words, with the papers' difference where both runs have a reference."""
    records = [json.loads((Path(results) / f"{run.split('+')[0]}.json").read_text()) for run in (a, b)]
    differences = compare(results, a, b)
    lines = [f"{a} against {b}: {differences['test_nll'].num_data} test images, K = {records[0]['num_samples']}"]
    for key, label in (("test_nll", "test NLL"), ("test_neg_elbo", "test -ELBO")):
        d = differences[key]
        lines.append(f"  {label}: {d.mean:+.2f} ± {d.se:.2f} nats (paired; unpaired ± {d.unpaired_se:.2f}; "
                     f"correlation {d.correlation:.3f})")
    references = [reference(results, run) for run in (a, b)]
    lines.append(f"  the papers' test NLL: {references[0]:.2f} against {references[1]:.2f}, "
                 f"{references[0] - references[1]:+.2f}")
    lines.append("  (the paired error is the test images' sampling only: another training seed moves each run too)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a scored run's name (its result file's stem): vamp-1l; or several seeds' "
                                  "runs joined by +, averaged: vamp-1l-code-static+vamp-1l-code-static-s1")
    parser.add_argument("b", help="the run(s) it is compared with: vamp-1l-standard")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    try:
        print(report(Path(args.results), args.a, args.b))
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
