"""EditWorld's exact metrics as registered metrics: strict edit success, and the exact match of a
guide's text output with the sample's explicit rewrite (MGIE's expressive instruction)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from ...editworld.world import normalize_text
from .. import editworld_metrics as M
from ..samples import resize_rgb
from .base import Metric, mean, register_metric


@register_metric
class EditSuccess(Metric):
    name, needs, higher_is_better, family = "edit_success", frozenset({"editworld"}), True, "exact"
    description = ("1 if the output is a correct edit by EditWorld's strict per-type checks, else 0 "
                   "(editkit/eval/editworld_metrics.py); failed checks are listed per sample")

    def compute(self, batch, indices):
        out = []
        for i in indices:
            verdict = M.edit_checks(batch.outputs[i], batch.samples[i].editworld)
            out.append({"edit_success": int(verdict["success"]), "failed_checks": verdict["failed"]})
        return out

    def summarize(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        scored = [r for r in rows if r.get("edit_success") is not None]
        if not scored:
            return {}
        by_type: dict[str, list[int]] = defaultdict(list)
        by_family: dict[str, list[int]] = defaultdict(list)
        for r in scored:
            by_type[str(r.get("edit_type"))].append(r["edit_success"])
            by_family[str(r.get("family"))].append(r["edit_success"])
        return {
            "edit_success": mean(r["edit_success"] for r in scored),
            "edit_success_by_type": {k: mean(v) for k, v in sorted(by_type.items())},
            "edit_success_by_family": {k: mean(v) for k, v in sorted(by_family.items())},
        }

    def config(self) -> dict[str, Any]:
        return {"constants": dict(M.CONSTANTS)}


@register_metric
class ExpressiveExactMatch(Metric):
    name, needs, higher_is_better, family = "expressive_exact_match", frozenset({"text", "rewrite"}), True, "guide"
    description = "1 if the guide's text output equals the sample's explicit rewrite (normalised), else 0"

    def compute(self, batch, indices):
        return [int(_sentence(batch.texts[i]) == _sentence(batch.samples[i].rewrite)) for i in indices]

    def summarize(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        vals = [r[self.name] for r in rows if r.get(self.name) is not None]
        return {self.name: mean(vals), "expressive_count": len(vals)} if vals else {}


def _sentence(text: str) -> str:
    """Normalised tokens without a final full stop (MGIE's cleaned text ends with one; rewrites do not)."""
    return normalize_text(text).rstrip(" .")


@register_metric
class BaseRetrievalAccuracy(Metric):
    """Whether a guide that picks a base image among its image inputs (``EditResult.extras["base_index"]``, the
    source being 0) picked the right one: the sample's ``base_index`` when the dataset has it, else the source."""

    name, needs, higher_is_better, family = "base_retrieval_accuracy", frozenset({"extra:base_index"}), True, "guide"
    description = "1 if the guide's chosen base input is the sample's base (default: the source image), else 0"

    def compute(self, batch, indices):
        return [int(int(batch.extras[i]["base_index"]) == int(getattr(batch.samples[i], "base_index", 0) or 0))
                for i in indices]


@register_metric
class CandidateEditSuccess(Metric):
    """Edit success of every candidate a guide sampled (``EditResult.candidates``), e.g. blended's K samples:
    the mean over the candidates is the exact expected success of taking one at random, which the guide's
    ranking (``edit_success``, its best-first pick) has to beat; any-candidate success is the ceiling of
    any ranking."""

    name, needs, higher_is_better, family = ("edit_success_random_candidate", frozenset({"editworld", "extra:candidates"}),
                                             True, "exact")
    description = ("mean EditWorld edit success over the guide's candidates (= a random candidate's expected "
                   "success); also edit_success_any_candidate (1 if some candidate succeeds) and "
                   "candidate_ranking_gain (edit_success minus the random candidate's)")

    def compute(self, batch, indices):
        out = []
        for i in indices:
            size = batch.sources[i].shape[:2]
            wins = [int(M.edit_checks(resize_rgb(M.as_array(c), size), batch.samples[i].editworld)["success"])
                    for c in batch.extras[i]["candidates"]]
            out.append({self.name: sum(wins) / len(wins), "edit_success_any_candidate": int(any(wins)),
                        "candidates_scored": len(wins)})
        return out

    def summarize(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        scored = [r for r in rows if r.get(self.name) is not None]
        if not scored:
            return {}
        random_pick = mean(r[self.name] for r in scored)
        out = {self.name: random_pick, "edit_success_any_candidate": mean(r["edit_success_any_candidate"] for r in scored)}
        ranked = mean(r.get("edit_success") for r in scored)
        if ranked is not None:
            out["candidate_ranking_gain"] = ranked - random_pick
        return out
