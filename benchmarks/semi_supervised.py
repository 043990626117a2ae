"""Kingma et al. 2014's M2 on MNIST with few labels: test classification error against their Table 1.

For each label count, the M2 model (`pyro_vae.SemiSupervisedVAE`: 784-500-50, softplus MLPs,
Bernoulli likelihood) is trained by `inference.fit` with the `enum` estimator on 50 000 training
images of which only that many keep their label (the same number per class), with Kingma et al.'s
alpha (0.1 N per mean over the labelled data); the classifier's error on the 10 000 test images is
recorded after every epoch (a callback) and the final one reported. Resumable: the run folders are
``runs/m2/labels-N``; ``--max-minutes`` bounds each label count's training in this session.

    python benchmarks/semi_supervised.py [--labels 100 3000] [--epochs 100] [--max-minutes 20] [--resume]
        [--table BENCHMARKS.md]

Writes ``benchmarks/results/m2-labels-N.json`` and, with ``--table``, the results table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from inference import fit
from pyro_vae import SemiSupervisedVAE, load_dataset
from recording import git_commit, write_block  # benchmarks/recording.py

HERE = Path(__file__).resolve().parent
KINGMA = {100: 11.97, 3000: 3.92}  # Table 1: test error in %, as the issue quotes it


def run(labels: int, args) -> dict:
    train = load_dataset("mnist", split="train", representation="dynamic", seed=args.seed, limit=args.limit)
    train, _ = train.split(min(10000, len(train) // 6), seed=args.seed)  # Kingma et al.: 50 000 + 10 000 held out
    data = train.with_labels(labels, seed=args.seed)
    test = load_dataset("mnist", split="test", representation="dynamic", seed=args.seed + 1,
                        limit=args.limit and min(args.limit, 10000))
    torch.manual_seed(args.seed)
    alpha = SemiSupervisedVAE.kingma_alpha(data)
    m2 = SemiSupervisedVAE(train.x_shape, z_dim=50, hidden=(500,), alpha=alpha)
    errors = []
    folder = Path(args.out) / f"labels-{labels}"
    resume = args.resume and (folder / "checkpoint.pt").exists()
    history = folder / "test_error.json"
    if resume and history.exists():
        errors = json.loads(history.read_text())

    def record(row):
        errors.append({"epoch": row["epoch"], "test_error": m2.error_rate(test), "train_loss": row["train_loss"]})
        history.write_text(json.dumps(errors))

    result = fit(m2.model, m2.guide, data, estimator="enum", epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, seed=args.seed, run_dir=folder, resume=resume, callbacks=[record],
                 max_seconds=args.max_minutes * 60 if args.max_minutes else None, progress=not args.no_progress)
    error = m2.error_rate(test)
    return {
        "labels": labels,
        "reference": {"paper": "Kingma et al. 2014, Table 1 (M2)", "test_error_percent": KINGMA.get(labels)},
        "test_error_percent": 100 * error,
        "status": "finished" if result.epoch >= args.epochs else "partial",
        "epochs": result.epoch,
        "epochs_planned": args.epochs,
        "train_seconds": result.train_seconds,
        "alpha": alpha,
        "per_epoch": errors,
        "setup": f"784-500-50 softplus MLPs, Adam lr {args.lr}, batch {args.batch_size}, enum over y, "
                 f"{len(data)} training images ({labels} labelled), dynamic binarization",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "command": " ".join(["python", "benchmarks/semi_supervised.py", *sys.argv[1:]]),
        "commit": git_commit(),
    }


def table(results: Path) -> str:
    rows = ["| labels | Kingma et al. (M2) | ours | epochs | train time | status |", "|---|---|---|---|---|---|"]
    for path in sorted(results.glob("m2-labels-*.json"), key=lambda p: int(p.stem.split("-")[-1])):
        r = json.loads(path.read_text())
        ref = r["reference"]["test_error_percent"]
        rows.append(f"| {r['labels']} | {ref if ref is not None else '-'}% | {r['test_error_percent']:.2f}% | "
                    f"{r['epochs']}/{r['epochs_planned']} | {r['train_seconds'] / 60:.0f} min | {r['status']} |")
    return "\n".join(rows)


def write_table(benchmarks: Path, results: Path) -> None:
    write_block(benchmarks, "semi-supervised", table(results), "Semi-supervised M2: test error with few labels (`benchmarks/semi_supervised.py`)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 3000])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=None, help="per label count, this session")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N training (and test) images: smoke tests")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default="runs/m2")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--table", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for labels in args.labels:
        record = run(labels, args)
        (results / f"m2-labels-{labels}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: record[k] for k in ("labels", "test_error_percent", "epochs", "status")}))
    if args.table:
        write_table(Path(args.table), results)


if __name__ == "__main__":
    main()
