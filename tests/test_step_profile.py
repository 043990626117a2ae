"""benchmarks/step_profile.py: each sample of a py-spy profile counts once, in the first matching category."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import step_profile  # noqa: E402

LINES = [  # py-spy's raw format: the stack from the outside in, then the number of samples
    "<module> (reproduce.py:1);fit (inference/svi.py:559);Captured.__call__ (inference/compiled.py:257);"
    "CompiledFxGraph.__call__ (torch/_inductor/output_code.py:828) 6\n",
    "<module> (reproduce.py:1);fit (inference/svi.py:559);Captured.__call__ (inference/compiled.py:257) 2\n",
    "<module> (reproduce.py:1);fit (inference/svi.py:604);wrapper (torch/optim/lr_scheduler.py:166);"
    "_fused_adam (torch/optim/adam.py:879) 3\n",
    "<module> (reproduce.py:1);fit (inference/svi.py:604);wrapper (torch/optim/lr_scheduler.py:166) 1\n",
    "<module> (reproduce.py:1);fit (inference/svi.py:552);ImageData.batch (pyro_vae/data.py:126) 4\n",
    "<module> (reproduce.py:1);fit (inference/svi.py:610) 1\n",
    "<module> (reproduce.py:1);load_dataset (pyro_vae/data.py:20) 3\n",
]


def test_every_sample_is_counted_once_in_its_first_category():
    counts, total = step_profile.split(LINES)
    assert total == 20 and sum(counts.values()) == 20
    assert counts == {
        "compiled graph: the kernels": 6,
        "compiled graph: the Python around it (Captured, dynamo, AOTAutograd)": 2,
        "optimizer: the fused Adam kernel": 3,
        "optimizer: the Python around it (scheduler hook, optimizer wrappers)": 1,
        "data: the batch (indexing, dynamic binarization)": 4,
        "the rest of fit's loop": 1,
        "other (outside fit)": 3,
    }
