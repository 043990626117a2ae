"""Does a larger beta give independent, interpretable latents? beta-VAE and beta-TCVAE on the shapes data.

For each model (``beta-vae``: the KL weighted by beta through the beta handler; ``beta-tcvae``: only
the total correlation weighted, ``estimator="tcvae"``), each beta and each seed, a VAE (MLPs
4096-512-256-10 and back, Bernoulli likelihood, diagonal Gaussian guide) is trained by ``inference.fit`` on a
seeded subset of the shapes data (:mod:`pyro_vae.shapes`) and scored on held-out images and on fresh
draws of the factors:

reconstruction E_q[log p(x|z)] and KL(q(z|x) || p(z)) per image (``evaluate``, K = 1), the total
correlation of the aggregate posterior q(z), MIG, the FactorVAE score and DCI disentanglement, all by
``inference.disentanglement.disentanglement_scores`` (the notebook scores its models with it too).

Each trained model is a run folder ``runs/disentanglement/MODEL-beta-B-seed-S`` (resumable) with its
scores in ``scores.json``; finished models are skipped, so the study resumes across sessions.
Writes ``benchmarks/results/disentanglement.json``, figures in ``docs/`` (each metric against beta with
one point per seed; latent traversals of the models with the best and the worst MIG) and, with
``--table``, a table of means and spreads over seeds in BENCHMARKS.md with the two findings the
issue asks about: does total correlation fall as beta grows, and how much of the spread in MIG is
between seeds rather than between betas (Locatello et al. 2019).

    python benchmarks/disentanglement.py [--betas 1 2 4 8 16] [--seeds 0 1 2] [--models beta-vae beta-tcvae]
        [--steps 3000] [--max-minutes 60] [--table BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch

from inference import fit
from inference.disentanglement import GroundTruth, disentanglement_scores
from pyro_vae import VAE, load_dataset
from pyro_vae.plots import traversals
from pyro_vae.shapes import FACTOR_NAMES, FACTOR_SIZES, render
from recording import command_line, git_commit, write_block  # benchmarks/recording.py

HERE = Path(__file__).resolve().parent
MODELS = ("beta-vae", "beta-tcvae")
METRICS = ("reconstruction", "kl", "total_correlation", "mig", "factorvae", "dci")


def _name(model: str, beta: float, seed: int) -> str:
    return f"{model}-beta-{beta:g}-seed-{seed}"


def _vae(x_shape, args) -> VAE:
    return VAE(x_shape, z_dim=args.z_dim, hidden=tuple(args.hidden))


def train_and_score(model: str, beta: float, seed: int, train, held_out, args, deadline: float) -> dict | None:
    """Train one model (or resume it) and score it; ``None`` when the session's time ran out first."""
    folder = Path(args.out) / _name(model, beta, seed)
    scores_path = folder / "scores.json"
    if scores_path.exists():
        return json.loads(scores_path.read_text())
    pyro.clear_param_store()
    torch.manual_seed(seed)
    vae = _vae(train.x_shape, args)
    options = (dict(beta=beta) if model == "beta-vae" else dict(estimator="tcvae", tc_weight=beta))
    seconds_left = deadline - time.monotonic()
    if seconds_left < 30:
        return None
    result = fit(vae.model, vae.guide, train, epochs=10**6, max_steps=args.steps, batch_size=args.batch_size,
                 lr=args.lr, seed=seed, run_dir=folder, resume=(folder / "checkpoint.pt").exists(),
                 max_seconds=seconds_left, progress=not args.no_progress, **options)
    if result.step < args.steps:
        return None  # resumed next time
    scores = score(vae, held_out, seed=seed, args=args)
    scores.update(model=model, beta=beta, seed=seed, steps=result.step, train_seconds=result.train_seconds)
    scores_path.write_text(json.dumps(scores, indent=2) + "\n")
    torch.save(vae.state_dict(), folder / "vae.pt")
    return scores


def score(vae: VAE, held_out, *, seed: int, args) -> dict:
    """Reconstruction, KL, aggregate total correlation, MIG, FactorVAE score and DCI of one trained VAE."""
    x = held_out.batch(torch.arange(len(held_out)))
    truth = GroundTruth(FACTOR_SIZES, render, FACTOR_NAMES)
    return disentanglement_scores(vae.model, vae.guide, vae.posterior, x, truth, seed=seed,
                                  mig_samples=args.mig_samples, votes=args.votes, dci_train=args.dci_train,
                                  dci_trees=args.dci_trees).as_dict()


def _spread(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else float("nan")


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks from 0, ties sharing their mean rank (as Spearman's correlation needs: beta repeats per seed)."""
    return torch.stack([(values < v).sum() + ((values == v).sum() - 1) / 2 for v in values]).double()


def _seed_share(values: torch.Tensor, beta: torch.Tensor) -> float:
    """The share of a metric's sum of squares that lies between seeds at a fixed beta,
    SS_within / SS_total = 1 - eta^2 of a one-way analysis by beta: 0 when beta decides the metric,
    1 when only the seed moves it (NaN while no beta has two seeds)."""
    if all((beta == b).sum() < 2 for b in beta.unique()):
        return float("nan")
    within = sum(float(((values[beta == b] - values[beta == b].mean()) ** 2).sum()) for b in beta.unique())
    total = float(((values - values.mean()) ** 2).sum())
    return within / total if total > 0 else float("nan")


def findings(records: list[dict]) -> dict:
    """Per model: Spearman's rank correlation of total correlation with beta (does it fall as beta
    grows? with beta tied across seeds, -1 is out of reach; whether every model at the next beta has a
    lower TC than every model at the last is ``tc_falls_at_every_beta_step``), and for each metric the
    share of its variance that lies between seeds at a fixed beta, beside its expected value were beta
    to have no effect (Locatello et al.'s question: does the seed matter as much as beta?)."""
    out = {}
    for model in sorted({r["model"] for r in records}):
        rows = [r for r in records if r["model"] == model]
        if len({r["beta"] for r in rows}) < 2:
            continue
        beta = torch.tensor([r["beta"] for r in rows], dtype=torch.float64)
        tc = torch.tensor([r["total_correlation"] for r in rows], dtype=torch.float64)
        spearman = float(torch.corrcoef(torch.stack([_ranks(beta), _ranks(tc)]))[0, 1])
        betas = beta.unique()  # sorted
        separated = all(bool(tc[beta == low].min() > tc[beta == high].max()) for low, high in zip(betas, betas[1:]))
        shares = {metric: _seed_share(torch.tensor([r[metric] for r in rows], dtype=torch.float64), beta)
                  for metric in ("total_correlation", "mig", "factorvae", "dci")}
        no_effect = (len(rows) - len(betas)) / (len(rows) - 1)  # the expected share if beta did nothing
        out[model] = {"spearman_tc_beta": spearman, "tc_falls_at_every_beta_step": separated,
                      "seed_variance_share": shares, "seed_variance_share_if_beta_had_no_effect": no_effect}
    return out


def table(records: list[dict]) -> str:
    rows = ["| model | beta | seeds | reconstruction | KL | total correlation | MIG | FactorVAE | DCI |",
            "|---|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for beta in sorted({r["beta"] for r in records if r["model"] == model}):
            group = [r for r in records if r["model"] == model and r["beta"] == beta]
            cells = []
            for metric in METRICS:
                mean, sd = _spread([r[metric] for r in group])
                cells.append(f"{mean:.3f} ± {sd:.3f}" if sd == sd else f"{mean:.3f}")
            rows.append(f"| {model} | {beta:g} | {len(group)} | " + " | ".join(cells) + " |")
    lines = ["\n".join(rows), ""]
    for model, f in findings(records).items():
        shares = ", ".join(f"{metric} {share:.2f}" for metric, share in f["seed_variance_share"].items())
        every = "every" if f["tc_falls_at_every_beta_step"] else "not every"
        lines.append(f"- {model}: Spearman correlation of total correlation with beta {f['spearman_tc_beta']:+.2f} "
                     f"({every} model at a larger beta has a lower TC than all at the smaller one); "
                     f"share of each metric's variance between seeds at a fixed beta: {shares} "
                     f"({f['seed_variance_share_if_beta_had_no_effect']:.2f} expected if beta had no effect)")
    return "\n".join(lines)


def figures(records: list[dict], docs: Path, args, held_out) -> list[str]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 6), layout="constrained")
    axes = fig.subplots(2, 3).flatten()
    for ax, metric in zip(axes, METRICS, strict=True):
        for offset, model in zip((-0.06, 0.06), MODELS, strict=True):
            rows = [r for r in records if r["model"] == model]
            ax.scatter([r["beta"] * (1 + offset) for r in rows], [r[metric] for r in rows], label=model, s=18)
        ax.set(xscale="log", xlabel="beta (KL weight; TC weight for beta-tcvae)", title=metric)
    axes[0].legend()
    paths = [docs / "disentanglement_metrics.png"]
    fig.savefig(paths[0], dpi=110)
    ranked = sorted(records, key=lambda r: r["mig"])
    x = held_out.batch(torch.arange(1))
    for label, r in (("best", ranked[-1]), ("worst", ranked[0])):
        vae = _vae(held_out.x_shape, args)
        vae.load_state_dict(torch.load(Path(args.out) / _name(r["model"], r["beta"], r["seed"]) / "vae.pt"))
        fig = traversals(vae, x, n=9, span=2.5)
        fig.suptitle(f"{label} MIG: {r['model']}, beta {r['beta']:g}, seed {r['seed']} (MIG {r['mig']:.2f})")
        paths.append(docs / f"traversals_{label}.png")
        fig.savefig(paths[-1], dpi=110)
    return [str(p) for p in paths]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--z-dim", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--limit", type=int, default=100000, help="training images drawn from the 737 280")
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--mig-samples", type=int, default=5000,
                        help="observations for MIG, and for the FactorVAE score's normalizing variances")
    parser.add_argument("--votes", type=int, default=500, help="FactorVAE training votes (half as many to evaluate)")
    parser.add_argument("--dci-train", type=int, default=1000)
    parser.add_argument("--dci-trees", type=int, default=30)
    parser.add_argument("--max-minutes", type=float, default=None, help="for this session, all models together")
    parser.add_argument("--out", default="runs/disentanglement")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--docs", default=str(HERE.parent / "docs"))
    parser.add_argument("--table", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.command = command_line("disentanglement.py", argv)
    deadline = time.monotonic() + (args.max_minutes * 60 if args.max_minutes else float("inf"))
    data = load_dataset("shapes", limit=args.limit + args.held_out, seed=0)
    train, held_out = data.split(args.held_out, seed=0)
    records, missing = [], []
    for seed in args.seeds:  # seeds outermost: an interrupted study has every beta for the first seeds
        for model in args.models:
            for beta in args.betas:
                record = train_and_score(model, beta, seed, train, held_out, args, deadline)
                (records if record else missing).append(record or _name(model, beta, seed))
    result = {"records": records, "missing": missing, "findings": findings(records),
              "setup": {k: v for k, v in vars(args).items() if k not in ("out", "results", "docs", "table")},
              "status": "finished" if not missing else "partial",
              "command": args.command, "commit": git_commit()}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / "disentanglement.json").write_text(json.dumps(result, indent=2) + "\n")
    if records:
        Path(args.docs).mkdir(parents=True, exist_ok=True)
        result["figures"] = figures(records, Path(args.docs), args, held_out)
    if args.table and records:
        heading = "Disentanglement: beta-VAE and beta-TCVAE on the shapes data (`benchmarks/disentanglement.py`)"
        status = (f"{len(records)} models scored, {len(missing)} not yet: partial" if missing else
                  f"{len(records)} models, finished")
        write_block(Path(args.table), "disentanglement", f"{status}; `{result['command']}`\n\n{table(records)}", heading)
    print(json.dumps({"scored": len(records), "missing": len(missing), "findings": result["findings"]}))


if __name__ == "__main__":
    main()
