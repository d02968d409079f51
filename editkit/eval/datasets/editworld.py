"""EditWorld dataset folders as evaluation samples (the exact scene data rides along for edit success)."""
from __future__ import annotations

from pathlib import Path

from ...editworld.dataset import load_dataset
from ...errors import InvalidInputError
from ...editworld.generator import Sample
from ..samples import EvalDataset, EvalSample


def from_editworld(s: Sample) -> EvalSample:
    return EvalSample(
        id=s.id,
        instruction=s.instruction,
        source=s.source,
        target=s.target,
        mask=s.mask,
        source_caption=s.source_caption or None,
        target_caption=s.target_caption or None,
        edit_type=s.edit_type,
        family=s.family,
        rewrite=s.rewrite,
        inputs=dict(s.inputs),
        meta={"action": s.action},
        editworld=s,
    )


def load(path: Path, limit: int | None = None) -> EvalDataset:
    if path.is_file():  # samples.jsonl given directly
        path = path.parent
    ds = load_dataset(path, limit=limit)
    return EvalDataset([from_editworld(s) for s in ds], "editworld", str(path), dict(ds.meta))


GENERATE_DEFAULTS = {"split": "test", "count": "200", "seed": "0", "types": "all", "size": "64"}


def generate(params: str, limit: int | None = None) -> EvalDataset:
    """EditWorld samples generated in memory: ``editworld-gen:split=test,count=200,seed=0,types=all,size=64``.

    ``types`` lists edit types or families joined by ``+`` (e.g. ``explicit+referring``). Deterministic for
    the parameters, so a spec that names it needs no dataset folder.
    """
    from ...editworld import generate as ew_generate
    from ...editworld import resolve_types

    opts = dict(GENERATE_DEFAULTS)
    for part in filter(None, (p.strip() for p in str(params).split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in GENERATE_DEFAULTS:
            raise InvalidInputError(f"editworld-gen: expected KEY=VALUE with KEY in {', '.join(GENERATE_DEFAULTS)}, "
                                    f"got {part!r}")
        opts[key.strip()] = value.strip()
    try:
        count, seed, size = int(opts["count"]), int(opts["seed"]), int(opts["size"])
    except ValueError:
        raise InvalidInputError(f"editworld-gen: count, seed and size must be integers ({params!r})") from None
    if count < 1:
        raise InvalidInputError(f"editworld-gen: count must be at least 1, got {count}")
    types = resolve_types([t for t in opts["types"].split("+") if t])
    if limit is not None:
        count = min(count, limit)
    samples = ew_generate(opts["split"], count, seed=seed, types=types, size=size)
    canonical = ",".join(f"{k}={opts[k]}" for k in GENERATE_DEFAULTS)
    return EvalDataset([from_editworld(s) for s in samples], "editworld", f"editworld-gen:{canonical}",
                       {"generated": {k: opts[k] for k in GENERATE_DEFAULTS}})
