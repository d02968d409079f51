"""Where the tiny any2pix loses its edits: the LLM half or the diffusion half?

Edits the first multimodal EditWorld test samples (``--count``, seed 0, the set of ``editkit eval --guide any2pix
--dataset runs/ew-test-multimodal``) three ways with the committed folder, each sample alone with seed 0 + index:

- ``guide``: the guide as it is;
- ``oracle caption``: the LLM's target caption replaced by the true target caption;
- ``oracle caption + gen``: also its [gen] read-out replaced by the ImageBind embedding of the true target image.

With both oracles the LLM half is perfect, so what still fails is the diffusion half (the adapter, the UNet used
as a text-to-image model, the DDIM-inverted start). Prints the strict edit success by edit type.

    python examples/any2pix_oracle.py --count 60 [--alpha 0.3] [--model FOLDER] [--modes "oracle caption + gen"]
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch
from PIL import Image

import editkit
from editkit.editworld import generate
from editkit.eval.editworld_metrics import edit_checks
from editkit.types import EditRequest


def request_for(sample, index: int) -> EditRequest:
    inputs = {k: (Image.fromarray(v) if k.startswith("image") else v) for k, v in sample.inputs.items()}
    return EditRequest(images=[Image.fromarray(sample.source)], instructions=[sample.instruction], inputs=inputs,
                       seed=index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--alpha", type=float, default=None, help="the guide's alpha (default: the folder's)")
    parser.add_argument("--model", default=None, help="an any2pix folder (default: the committed weights)")
    parser.add_argument("--modes", default="guide,oracle caption,oracle caption + gen")
    args = parser.parse_args()
    from editkit_any2pix import mixing

    options = {} if args.alpha is None else {"alpha": args.alpha}
    if args.model is not None:
        options["model"] = args.model
    guide = editkit.load_guide("any2pix", progress=False, **options)
    llm = guide.weights.llm
    answer = llm.answer
    samples = generate("test", args.count, seed=0, types="multimodal")
    scores: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[str, Counter] = defaultdict(Counter)
    for mode in args.modes.split(","):
        for i, s in enumerate(samples):
            def patched(*a, _s=s, **k):
                out = answer(*a, **k)
                if mode != "guide":
                    out.caption = _s.target_caption
                if mode == "oracle caption + gen":
                    target = guide.weights.encoder.encode_images([Image.fromarray(_s.target)])
                    out.gen = mixing.to_norm(target, guide.config.norm)[0].to(out.gen)
                return out

            llm.answer = patched
            with torch.no_grad():
                out = guide.edit(request_for(s, i)).images[0]
            checks = edit_checks(out, s)
            scores[mode][s.edit_type].append(int(checks["success"]))
            failed[mode].update(f"{s.action}:{name}" for name in checks["failed"])
        llm.answer = answer
        total = [v for vals in scores[mode].values() for v in vals]
        by_type = ", ".join(f"{t} {sum(v)}/{len(v)}" for t, v in sorted(scores[mode].items()))
        print(f"{mode}: {sum(total)}/{len(total)} ({100 * sum(total) / len(total):.1f}%): {by_type}", flush=True)
        print("  failed checks:", ", ".join(f"{k} {v}" for k, v in sorted(failed[mode].items())), flush=True)


if __name__ == "__main__":
    main()
