"""How long a reproduction preset's schedule takes on this machine: its training step, timed.

Each named preset (``reproduce.PRESETS``) is built as ``reproduce.py`` builds it and trained by ``fit``
for ``--steps`` steps at its own batch size, estimator and particles, compiled unless ``--eager``; the
presets take turns, ``--rounds`` times, so that what else runs on the machine slows all of them alike.
The compile is left out of the step time. It prints each preset's median seconds a step, its ratio to
the first preset named, and the hours its full schedule would train at that pace (steps an epoch times
the preset's epochs; validation passes and the final scoring not included; early stopping may end a
run sooner).

    python benchmarks/preset_pace.py burda-1l-iwae5 burda-1l-iwae50 [--steps 200] [--rounds 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import statistics

import pyro
import torch

from inference import fit
from reproduce import PRESETS, training_data


def step_seconds(name: str, train, *, steps: int, compile: bool, device: str = "cpu") -> float:
    """Seconds a training step of preset ``name`` takes (the mean over ``steps``, compile left out)."""
    preset = PRESETS[name]
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = preset.build(train).to(device)
    result = fit(model.model, model.guide, train, **preset.fit_settings, max_steps=steps, compile=compile,
                 progress=False, device=device)
    return (result.train_seconds - result.compile_seconds) / steps


def pace(names: list[str], *, steps: int = 200, rounds: int = 3, compile: bool = True, device: str = "cpu") -> list[dict]:
    """A row per preset: ``seconds_per_step`` (median over rounds), ``ratio`` to the first preset's and
    the ``schedule_hours`` of its full schedule at that pace."""
    data = {name: training_data(PRESETS[name])[0] for name in names}
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            times[name].append(step_seconds(name, data[name], steps=steps, compile=compile, device=device))
    first = statistics.median(times[names[0]])
    rows = []
    for name in names:
        seconds = statistics.median(times[name])
        steps_per_epoch = math.ceil(len(data[name]) / PRESETS[name].batch_size)
        rows.append({"preset": name, "seconds_per_step": seconds, "ratio": seconds / first,
                     "steps_per_epoch": steps_per_epoch, "epochs": PRESETS[name].epochs,
                     "schedule_hours": seconds * steps_per_epoch * PRESETS[name].epochs / 3600})
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", choices=list(PRESETS), metavar="PRESET",
                        help=f"one or more of {', '.join(PRESETS)}; ratios are to the first")
    parser.add_argument("--steps", type=int, default=200, help="steps a preset trains in each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="time eager steps instead of compiled ones")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = pace(args.presets, steps=args.steps, rounds=args.rounds, compile=not args.eager, device=args.device)
    kind = "eager" if args.eager else "compiled"
    print(f"{kind} training steps on {args.device}, {torch.get_num_threads()} thread(s), median of {args.rounds} "
          f"rounds of {args.steps} steps:")
    for r in rows:
        print(f"  {r['preset']}: {1000 * r['seconds_per_step']:.2f} ms a step ({r['ratio']:.2f}x {args.presets[0]}); "
              f"{r['steps_per_epoch']} steps x {r['epochs']} epochs = {r['schedule_hours']:.1f} h of training")
    return rows


if __name__ == "__main__":
    main()
