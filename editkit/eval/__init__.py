"""Evaluation and ablations (docs/evaluation.md). Importing this package is cheap; submodules import
numpy/PIL, and torch only inside the learned metrics.

* :mod:`.datasets` -- dataset adapters (EditWorld, MagicBrush, PIE-Bench, generic JSONL) -> :mod:`.samples`;
* :mod:`.metrics` -- the metric registry (pixel, CLIP, DINO, LPIPS, EditWorld exact), :mod:`.suite` runs them;
* :mod:`.runner` -- ``run_eval``, the engine of ``editkit eval`` (resumable; files in :mod:`.results`);
* :mod:`.ablation` / :mod:`.report` -- ``editkit ablate``: spec, variants, tables, plots, HTML;
* :mod:`.editworld_metrics` -- EditWorld's exact metrics and the strict edit-success criterion.
"""
