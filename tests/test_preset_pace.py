"""benchmarks/preset_pace.py: a preset's step, timed, and the hours of its schedule at that pace."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import preset_pace  # noqa: E402


def test_each_preset_is_timed_at_its_own_batch_and_its_schedule_is_priced(capsys):
    rows = preset_pace.main(["burda-1l-iwae5", "vamp-1l-standard", "--steps", "3", "--rounds", "1", "--eager"])
    iwae, vamp = rows
    assert (iwae["steps_per_epoch"], iwae["epochs"]) == (3000, 3280)  # 60 000 images, batch 20, Burda's schedule
    assert (vamp["steps_per_epoch"], vamp["epochs"]) == (500, 2000)  # 10 000 held out, batch 100
    assert iwae["ratio"] == 1.0 and vamp["ratio"] == pytest.approx(vamp["seconds_per_step"] / iwae["seconds_per_step"])
    for r in rows:
        assert r["seconds_per_step"] > 0
        assert r["schedule_hours"] == pytest.approx(r["seconds_per_step"] * r["steps_per_epoch"] * r["epochs"] / 3600)
    assert "vamp-1l-standard:" in capsys.readouterr().out


def test_an_unknown_preset_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        preset_pace.main(["burda-3l-vae"])
    assert "burda-1l-vae" in capsys.readouterr().err
