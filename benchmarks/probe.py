"""Where an unfinished reproduction stands in log p(x), without looking at the test set.

A training bound is not the test NLL a reproduction is judged by: the slack between them depends on the
bound (about 4 nats for the ELBO of ``burda-1l-vae``, less for an IWAE bound) and on the model. This
script loads a run's current parameters (``best.pt`` where early stopping keeps one: what the run would
score; ``checkpoint.pt`` otherwise) from ``runs/reproduce/RUN`` or the stash, and estimates log p(x) with
K importance samples on held-out images: the run's validation split, or, for a preset without one
(Burda et al. train on all 60 000 images), the first training images, which then measure fit, not
generalization. The test set is never loaded, so a probe can guide nothing that the test set should judge.
It reads the files while the run trains (checkpoints are replaced atomically) and appends its record to
``benchmarks/results/probes/RUN.json``, a history across sessions; ``--table BENCHMARKS.md`` rewrites the
table of every run's probes there.

    python benchmarks/probe.py RUN [--images 1000] [--samples 5000] [--compile] [--table BENCHMARKS.md]
    python benchmarks/probe.py burda-1l-iwae5 --images 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from inference import evaluate, load_checkpoint, load_params
from recording import command_line, git_commit, write_block  # benchmarks/recording.py
from reproduce import PRESETS, parse_run_name, training_data, units_text

HERE = Path(__file__).resolve().parent


def probe(name: str, *, images: int = 1000, samples: int = 5000, out: str | Path = "runs/reproduce",
          stash: str | Path = HERE / "stash", results: str | Path = HERE / "results",
          compile: bool = False, progress: bool = True, command: str = "") -> dict:
    """Score run ``name``'s current parameters on ``images`` held-out images with ``samples`` importance
    samples; return the record appended to ``results/probes/NAME.json``.

    :raises FileNotFoundError: the run has no checkpoint in ``out`` or ``stash`` (the message says how to start it).
    """
    preset_name, _, limit, seed = parse_run_name(name)  # the run's seed: its validation split
    preset = PRESETS[preset_name]
    folders = [Path(out) / name, Path(stash) / name]
    folder = next((f for f in folders if (f / "checkpoint.pt").exists()), None)
    if folder is None:
        raise FileNotFoundError(f"no checkpoint of {name} in {' or '.join(map(str, folders))}: start the run with "
                                f"python benchmarks/reproduce.py {preset_name} --compile --resume")
    path = folder / "best.pt" if (folder / "best.pt").exists() else folder / "checkpoint.pt"
    train, validation = training_data(preset, seed, limit)
    held, split = (validation, "validation") if validation is not None else (train, "training")
    held = held.subset(slice(0, min(images, len(held))))
    torch.manual_seed(seed)
    model = preset.build(train)
    with tempfile.TemporaryDirectory(prefix=f"probe-{name}-") as snapshot:
        # one copy read twice: the training run may replace the file between two reads of it, and the
        # record's epoch would then not be the parameters' (fit replaces it atomically, so the copy is whole)
        copy = Path(shutil.copy2(path, Path(snapshot) / path.name))
        state = load_checkpoint(copy)
        load_params(copy, model.model, model.guide, held.batch(torch.arange(min(len(held), 8))), num_data=len(train))
    sites = getattr(model, "latent_sites", ("z",))
    ks = sorted({k for k in (1, preset.particles, samples) if samples % k == 0})  # the ELBO, the trained bound, K
    score = evaluate(model.model, model.guide, held, num_samples=samples, ks=ks,
                     latent_site=sites[-1], compile=compile, progress=progress)
    record = {
        "run": name,
        "epoch": state["epoch"],
        "parameters": path.name,
        "split": split,
        "images": score.num_data,
        "num_samples": samples,
        "log_px": score.log_px,
        "log_px_se": score.log_px_se,
        "elbo": score.elbo,
        "iwae_curve": {str(k): v for k, v in score.iwae_curve.items()},
        "active_units_by_site": score.active_units_by_site,
        "seconds": score.seconds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "commit": git_commit(),
    }
    # the slack of the trained bound (ELBO or IWAE-k) on the same images: paired, so its error is small
    slack = score.per_datum["log_px"] - score.per_datum[preset.particles]
    record.update(bound=preset.bound, slack=slack.mean().item(), slack_se=(slack.std() / len(slack) ** 0.5).item())
    if "value" in state:  # best.pt: the validation ELBO over every held-out image, for which it was kept
        record["best_validation_bound"] = state["value"]
        record["estimate"] = {"of": f"validation log p(x), all {len(validation)} images: best.pt's validation "
                                    f"{preset.bound} + the slack", "value": state["value"] + record["slack"]}
    elif state.get("metrics"):  # a checkpoint: the training bound of its last epoch (a mean over its steps)
        record["train_loss"] = state["metrics"][-1]["train_loss"]
        record["estimate"] = {"of": f"training log p(x): the last epoch's training {preset.bound} + the slack",
                              "value": -record["train_loss"] + record["slack"]}
    history_path = Path(results) / "probes" / f"{name}.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    history_path.parent.mkdir(parents=True, exist_ok=True)
    history_path.write_text(json.dumps(history + [record], indent=2) + "\n")
    return record


def describe(record: dict) -> str:
    """One line: the run, its epoch, what was scored and the estimates, in nats per image."""
    bounds = ", ".join(f"IWAE-{k} {v:.2f}" for k, v in record["iwae_curve"].items()
                       if int(k) not in (1, record["num_samples"]))
    return (f"{record['run']} at epoch {record['epoch']} ({record['parameters']}), {record['images']} "
            f"{record['split']} images, K = {record['num_samples']}: log p(x) {record['log_px']:.2f} ± "
            f"{record['log_px_se']:.2f}"
            + (f", {bounds}" if bounds else "") + f", ELBO {record['elbo']:.2f} ({record['seconds']:.0f} s); "
            f"log p(x) - {record['bound']} = {record['slack']:.2f} ± {record['slack_se']:.2f}"
            + (f"; {record['estimate']['of']}: {record['estimate']['value']:.2f}" if "estimate" in record else ""))


def table(results: str | Path) -> str:
    """The Markdown table of every probe in ``results/probes``: a row per probe, each run's in the order
    they were taken, so a run's rows read as its progress in log p(x) on the same held-out images."""
    rows = ["| run | epoch | parameters | held-out images | K | log p(x) | trained bound | ELBO | active units | "
            "log p(x) on all the split's images (bound + slack) | date |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((Path(results) / "probes").glob("*.json")):
        for r in json.loads(path.read_text()):
            k = PRESETS[parse_run_name(r["run"])[0]].particles  # the trained bound's k, as probe() scored it
            estimate = f"{r['estimate']['value']:.2f} ({r['split']})" if "estimate" in r else ""
            rows.append(f"| {r['run']} | {r['epoch']} | {r['parameters']} | {r['images']} {r['split']} | "
                        f"{r['num_samples']} | {r['log_px']:.2f} ± {r['log_px_se']:.2f} | "
                        f"{r['bound']} {r['iwae_curve'][str(k)]:.2f} | {r['elbo']:.2f} | "
                        f"{units_text(r['active_units_by_site'])} | {estimate} | {r['date']} |")
    return "\n".join(rows)


def write_table(benchmarks: str | Path, results: str | Path) -> None:
    """The probe table in ``benchmarks``, between ``<!-- probes -->`` and ``<!-- /probes -->``."""
    write_block(Path(benchmarks), "probes", table(results), "Probes of reproductions while they train (`benchmarks/probe.py`)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a reproduction run's name: PRESET or PRESET-eEPOCHS (reproduce.py's folders)")
    parser.add_argument("--images", type=int, default=1000, help="how many held-out images to score")
    parser.add_argument("--samples", type=int, default=5000, help="K, the importance samples per image")
    parser.add_argument("--out", default="runs/reproduce", help="where reproduce.py keeps its run folders")
    parser.add_argument("--stash", default=str(HERE / "stash"), help="where a run folder is looked for next")
    parser.add_argument("--results", default=str(HERE / "results"), help="the probe history goes to RESULTS/probes/")
    parser.add_argument("--compile", action="store_true", help="compile the importance-weight passes")
    parser.add_argument("--table", default=None, help="rewrite this BENCHMARKS.md's table of probes")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    record = probe(args.run, images=args.images, samples=args.samples, out=args.out, stash=args.stash,
                   results=args.results, compile=args.compile, progress=not args.no_progress,
                   command=command_line("probe.py", argv))
    print(describe(record))
    if args.table:
        write_table(args.table, args.results)
    return record


if __name__ == "__main__":
    main()
