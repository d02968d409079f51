"""The report of an ablation: comparison tables (Markdown + CSV), PNG plots and an HTML page.

Written into the ablation folder::

    comparison.csv / comparison.md   one row per variant, one column per metric, arrows from higher_is_better
    report.md                        title, settings, tables (also edit success per edit type), plots, notes
    report.html                      the same with image grids (source / each variant / target); relative
                                     paths only, so the folder opens from disk anywhere
    plots/*.png                      edit_success_by_type, sweep_<option> (metric vs a swept numeric option),
                                     clip_tradeoff (CLIP direction vs CLIP image, InstructPix2Pix style) and
                                     tradeoff (edit success vs background PSNR) where the metrics exist
    samples/<id>_source.png, _target.png   the images the HTML grid shows beside the outputs
"""
from __future__ import annotations

import csv
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .metrics import registry
from .results import ARROWS, output_path
from .samples import EvalDataset, safe_name

PREFERRED = ["edit_success", "psnr", "psnr_background", "ssim", "ssim_background", "l1", "mse", "l1_source",
             "l1_background", "clip_direction", "clip_image", "clip_i", "clip_t", "dino", "dino_source", "lpips",
             "lpips_background", "expressive_exact_match"]
SWEEP_METRICS = ["edit_success", "psnr", "psnr_background", "clip_direction", "clip_image", "clip_t", "ssim"]


_SEEN_DIRECTIONS: dict[str, bool | None] = {}


def _directions() -> dict[str, bool | None]:
    """higher_is_better of every registered metric and of the guide metrics seen in the summaries."""
    return {**_SEEN_DIRECTIONS, **{name: cls.higher_is_better for name, cls in registry().items()}}


def _learn_directions(variants: Sequence[Any]) -> None:
    for v in variants:
        for name, info in ((v.summary or {}).get("metrics") or {}).items():
            if isinstance(info, dict) and "higher_is_better" in info:
                _SEEN_DIRECTIONS.setdefault(name, info["higher_is_better"])


def _columns(variants: Sequence[Any]) -> list[str]:
    present: list[str] = []
    for v in variants:
        for name in v.summary.get("metric_order", []):
            if name not in present:
                present.append(name)
    return [m for m in PREFERRED if m in present] + [m for m in present if m not in PREFERRED]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _best(values: list[Any], higher: bool | None) -> Any:
    nums = [v for v in values if isinstance(v, (int, float))]
    if higher is None or len(set(nums)) < 2:
        return None
    return max(nums) if higher else min(nums)


def comparison(variants: Sequence[Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    """(header, rows of raw values, metric columns) for the variants that ran."""
    ok = [v for v in variants if v.status == "ok" and v.summary]
    cols = _columns(ok)
    dirs = _directions()
    header = ["variant", "guide", "count"] + [f"{c} {ARROWS.get(dirs.get(c))}".strip() for c in cols] + ["seconds_per_edit ↓"]
    rows = [[v.name, v.guide, v.summary.get("count")] + [v.summary.get(c) for c in cols] +
            [v.summary.get("seconds_per_edit")] for v in ok]
    return header, rows, cols


def markdown_table(header: list[str], rows: list[list[Any]], directions: list[bool | None] | None = None) -> str:
    """A Markdown table; with ``directions`` (per column, None = no ranking) the best value is bold."""
    best = [_best([r[j] for r in rows], directions[j]) if directions else None for j in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [f"**{_fmt(x)}**" if best[j] is not None and x == best[j] else _fmt(x) for j, x in enumerate(r)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _type_table(ok: Sequence[Any]) -> tuple[list[str], list[list[Any]]] | None:
    with_types = [v for v in ok if v.summary.get("edit_success_by_type")]
    if not with_types:
        return None
    types = sorted({t for v in with_types for t in v.summary["edit_success_by_type"]})
    header = ["edit type"] + [v.name for v in with_types]
    rows = [[t] + [v.summary["edit_success_by_type"].get(t) for v in with_types] for t in types]
    return header, rows


# ------------------------------------------------------------------------------------ plots
def _sweeps(ok: Sequence[Any]) -> dict[str, dict[str, list[tuple[float, Any]]]]:
    """{option: {series label: [(value, variant), ...]}} for numeric options swept over >= 2 values."""
    def value(v: Any, key: str) -> Any:
        return (v.config or {}).get(key, v.overrides.get(key))

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    keys = {k for v in ok for k, x in v.overrides.items() if number(x)}
    out: dict[str, dict[str, list[tuple[float, Any]]]] = {}
    for key in sorted(keys):
        others = sorted({o for v in ok for o in v.overrides if o != key})
        series: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        for v in ok:
            if not number(value(v, key)):
                continue
            same_guide = [w for w in ok if w.guide == v.guide]
            varying = [o for o in others if len({json.dumps(value(w, o), sort_keys=True) for w in same_guide}) > 1]
            label = " ".join([v.guide] + [f"{o}={value(v, o)}" for o in varying])
            series[label].append((float(value(v, key)), v))
        series = {s: sorted(p, key=lambda t: t[0]) for s, p in series.items() if len({x for x, _ in p}) >= 2}
        if series:
            out[key] = series
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(out: Path, variants: Sequence[Any]) -> list[tuple[str, str]]:
    """Draw the plots that the available metrics allow; returns (title, relative path) pairs."""
    ok = [v for v in variants if v.status == "ok" and v.summary]
    if not ok:
        return []
    plt = _pyplot()
    (out / "plots").mkdir(exist_ok=True)
    made: list[tuple[str, str]] = []

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out / "plots" / name, dpi=110)
        plt.close(fig)
        made.append((title, f"plots/{name}"))

    table = _type_table(ok)
    if table is not None:
        header, rows = table
        names, types = header[1:], [r[0] for r in rows]
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.28 * len(types) * max(1.0, len(names) / 3)))
        height = 0.8 / len(names)
        for j, name in enumerate(names):
            ys = np.arange(len(types)) + j * height
            ax.barh(ys, [r[j + 1] or 0.0 for r in rows], height=height, label=name)
        ax.set_yticks(np.arange(len(types)) + 0.4 - height / 2, types)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("edit success ↑")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("Edit success per edit type")
        save(fig, "edit_success_by_type.png", "Edit success per edit type")

    for key, series in _sweeps(ok).items():
        metrics = [m for m in SWEEP_METRICS if any(v.summary.get(m) is not None for p in series.values() for _, v in p)][:4]
        if not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
        dirs = _directions()
        for ax, metric in zip(axes[0], metrics):
            for label, points in series.items():
                xs = [x for x, v in points if v.summary.get(metric) is not None]
                ys = [v.summary[metric] for _, v in points if v.summary.get(metric) is not None]
                ax.plot(xs, ys, marker="o", label=label)
            ax.set_xlabel(key)
            ax.set_title(f"{metric} {ARROWS.get(dirs.get(metric), '')}")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        save(fig, f"sweep_{safe_name(key)}.png", f"Metrics vs {key}")

    for x_metric, y_metric, name, title in (
            ("clip_direction", "clip_image", "clip_tradeoff.png", "CLIP direction vs CLIP image (InstructPix2Pix trade-off)"),
            ("edit_success", "psnr_background", "tradeoff.png", "Edit success vs background PSNR")):
        points = [v for v in ok if v.summary.get(x_metric) is not None and v.summary.get(y_metric) is not None]
        if not points or (len(points) < 2 and x_metric != "clip_direction"):
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        sweeps = _sweeps(points)
        drawn: set[str] = set()
        for key, series in sweeps.items():
            for label, pts in series.items():
                xs = [v.summary[x_metric] for _, v in pts]
                ys = [v.summary[y_metric] for _, v in pts]
                ax.plot(xs, ys, marker="o", label=f"{label} ({key})")
                for (value, v), x, y in zip(pts, xs, ys):
                    ax.annotate(f"{value:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
                    drawn.add(v.name)
        for v in points:
            if v.name not in drawn:
                ax.scatter([v.summary[x_metric]], [v.summary[y_metric]], label=v.name)
        ax.set_xlabel(f"{x_metric} ↑")
        ax.set_ylabel(f"{y_metric} ↑")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        save(fig, name, title)
    return made


# ------------------------------------------------------------------------------------ HTML
def _pick_samples(dataset: EvalDataset, n: int) -> list[Any]:
    """Up to ``n`` samples, round-robin over edit types so the grid shows variety."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for s in dataset:
        groups[str(s.edit_type)].append(s)
    picked: list[Any] = []
    while len(picked) < n and any(groups.values()):
        for key in list(groups):
            if groups[key] and len(picked) < n:
                picked.append(groups[key].pop(0))
    order = {s.id: i for i, s in enumerate(dataset)}
    return sorted(picked, key=lambda s: order[s.id])


def _rows_of(run_dir: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[str(row["id"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    return rows


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(out: Path, spec: Any, variants: Sequence[Any], dataset: EvalDataset, plots: list[tuple[str, str]],
               notes: list[str]) -> None:
    ok = [v for v in variants if v.status == "ok" and v.summary]
    header, rows, _ = comparison(variants)
    (out / "samples").mkdir(exist_ok=True)
    grid_rows = []
    variant_rows = {v.name: _rows_of(out / v.run_dir) for v in ok}
    for s in _pick_samples(dataset, spec.report.samples):
        name = safe_name(s.id)
        Image.fromarray(s.load_source()).save(out / "samples" / f"{name}_source.png")
        cells = [f'<td><img src="samples/{name}_source.png" alt="source"><br>source</td>']
        for v in ok:
            rel = output_path(Path(v.run_dir), s.id).as_posix()
            row = variant_rows[v.name].get(s.id, {})
            mark = {1: " ✓", 0: " ✗"}.get(row.get("edit_success"), "")
            img = f'<img src="{html.escape(rel)}" alt="{html.escape(v.name)}">' if (out / rel).is_file() else "–"
            cells.append(f"<td>{img}<br>{html.escape(v.name)}{mark}</td>")
        target = s.load_target()
        if target is not None:
            Image.fromarray(target).save(out / "samples" / f"{name}_target.png")
            cells.append(f'<td><img src="samples/{name}_target.png" alt="target"><br>target</td>')
        caption = html.escape(f"{s.id} · {s.edit_type or ''} · {s.instruction}")
        grid_rows.append(f'<tr><th colspan="{len(cells)}" class="cap">{caption}</th></tr><tr>{"".join(cells)}</tr>')
    plot_html = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}'
                        f"</figcaption></figure>" for t, p in plots)
    type_table = _type_table(ok)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(spec.name)}</title>
<style>
body{{font-family:sans-serif;margin:1.5em;max-width:1400px}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:center;vertical-align:top}}
.grid img{{width:128px;height:128px;image-rendering:pixelated;object-fit:contain}} th.cap{{text-align:left;background:#f4f4f4}}
figure{{display:inline-block;margin:.5em}} figure img{{max-width:640px}}
</style></head><body>
<h1>{html.escape(spec.name)}</h1>
<p>{html.escape(spec.description)}</p>
<p>Dataset <code>{html.escape(spec.dataset)}</code> ({len(dataset)} samples), seed {spec.seed}.</p>
<h2>Comparison</h2>{_html_table(header, rows)}
{"<h2>Edit success per edit type</h2>" + _html_table(*type_table) if type_table else ""}
<h2>Plots</h2>{plot_html or "<p>No plot: the metrics they need are not available.</p>"}
<h2>Samples</h2><table class="grid">{"".join(grid_rows)}</table>
<h2>Notes</h2><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none</li>"}</ul>
</body></html>
"""
    (out / "report.html").write_text(page, encoding="utf-8")


# ------------------------------------------------------------------------------------ all
def write_report(out: Path, spec: Any, variants: Sequence[Any], dataset: EvalDataset) -> dict[str, Any]:
    out = Path(out)
    _learn_directions(variants)
    header, rows, cols = comparison(variants)
    dirs = _directions()
    directions = [None, None, None] + [dirs.get(c) for c in cols] + [False]
    with (out / "comparison.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header + ["run_dir"])
        ok = [v for v in variants if v.status == "ok" and v.summary]
        for r, v in zip(rows, ok):
            writer.writerow(r + [v.run_dir])
    table = markdown_table(header, rows, directions)
    (out / "comparison.md").write_text(table + "\n", encoding="utf-8")
    notes = [f"variant '{v.name}': {v.status}: {v.note}" for v in variants if v.note]
    skipped: dict[str, str] = {}
    for v in variants:
        if v.status == "ok" and v.summary:
            skipped.update(v.summary.get("metrics_skipped") or {})
    notes += [f"metric '{k}' not reported: {why}" for k, why in sorted(skipped.items())]
    plots = plot_all(out, variants) if spec.report.plots else []
    parts = [f"# {spec.name}", "", spec.description, "",
             f"Dataset `{spec.dataset}` ({len(dataset)} samples), seed {spec.seed}, batch size {spec.batch_size}. "
             "Arrows give the better direction; the best value per column is bold. Each variant's full results "
             "(run.json, metrics.jsonl, summary.json) are in its run folder.", "", "## Comparison", "", table, ""]
    type_table = _type_table([v for v in variants if v.status == "ok" and v.summary])
    if type_table:
        parts += ["## Edit success per edit type", "", markdown_table(*type_table, [None] + [True] * (len(type_table[0]) - 1)), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{t}]({p})" for t, p in plots] + [""]
    parts += ["## Notes", ""] + ([f"- {n}" for n in notes] or ["- none"]) + [""]
    (out / "report.md").write_text("\n".join(parts), encoding="utf-8")
    write_html(out, spec, variants, dataset, plots, notes)
    return {"plots": plots, "notes": notes, "columns": cols}


#: Folders of an exported report that hold only what its report.html shows; a re-export replaces them.
EXPORTED_IMAGE_FOLDERS = ("runs", "samples", "plots")


def export(out: Path, dest: Path) -> list[Path]:
    """Copy the report of ``out`` into ``dest`` without the bulky run folders: the tables, report.md,
    plots, and report.html with exactly the images it shows (same relative paths, so it still opens
    from disk). For committing a report, e.g. to docs/ablations/. Re-exporting into the same ``dest``
    removes the images an earlier export left there that the new report no longer shows (variants
    whose options changed), and nothing else."""
    import re
    import shutil

    out, dest = Path(out), Path(dest)
    if not (out / "report.html").is_file():
        raise FileNotFoundError(f"{out} holds no report (report.html); run the ablation first")
    files = ["comparison.csv", "comparison.md", "report.md", "report.html", "ablation.json"]
    page = (out / "report.html").read_text(encoding="utf-8")
    files += sorted(set(re.findall(r'src="([^"]+)"', page)))
    copied = []
    for rel in files:
        src = out / html.unescape(rel)
        if src.is_file():
            target = dest / html.unescape(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            copied.append(target)
    _remove_stale_images(dest, {p.resolve() for p in copied})
    return copied


def _remove_stale_images(dest: Path, keep: set[Path]) -> None:
    for name in EXPORTED_IMAGE_FOLDERS:
        folder = dest / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), reverse=True):  # children before their folders
            if path.is_file() and path.resolve() not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
