"""The issue's speed target: ``editkit eval`` on 200 EditWorld samples with ip2p in <= 2 minutes on 2 CPU
cores (weights loading included). Slow: run with ``pytest -m slow tests/test_eval_speed.py``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from editkit.cli import main

WEIGHTS = Path(__file__).resolve().parents[1] / "editkit" / "assets" / "editworld-tiny"
LIMIT_SECONDS = 120.0


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS.is_dir(), reason="the committed tiny EditWorld weights are not there yet")
def test_eval_200_editworld_samples_with_ip2p_within_two_minutes(tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(["eval", "--guide", "ip2p", "--dataset", "editworld-gen:split=test,count=200,seed=0",
                 "--out", str(tmp_path / "ip2p"), "--batch-size", "8", "--no-progress"])
    seconds = time.perf_counter() - t0
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "ip2p" / "summary.json").read_text())
    assert summary["count"] == 200
    assert seconds <= LIMIT_SECONDS, f"{seconds:.1f} s for 200 samples (guide {summary['seconds_per_edit']:.3f} s/edit)"
