"""Render retrieval benchmark results as a terminal table or a GitHub markdown table.

``results`` is ``{"models": {"<model>": {"text_to_image": {...}, "image_to_text": {...}}}}``
where each direction dict is what ``retrieval_metrics`` returns ("R@k" fractions,
"median_rank"); extra keys (n_images, dataset, ...) are ignored.

``comparisons`` (optional) is ``{"<model>": compare(...)}``, i.e. per model
``{"source": str, "text_to_image": {"R@1": {"ours", "published", "diff"}, ...},
"image_to_text": {...}}``. When given, a "Pub R@k" column per recall shows the published
value and our difference in points, e.g. ``58.8 (+0.3)``; models without an entry show
"-". Recalls are printed as percentages with one decimal. With several models, every model
after the first shows its gain over the first in points, e.g. ``52.9 (+42.2)``, so
``--model BASE --model TUNED`` reads as what fine-tuning bought.
"""

from __future__ import annotations

import re

from search.errors import InputError

__all__ = ["format_table", "format_markdown"]

# (result key, terminal label, markdown label)
_DIRECTIONS = (
    ("text_to_image", "text->image", "text → image"),
    ("image_to_text", "image->text", "image → text"),
)
_RECALL = re.compile(r"^R@(\d+)$")


def format_table(results: dict, comparisons: dict | None = None) -> str:
    """Aligned plain-text table, one row per model x direction."""
    header, rows = _rows(results, comparisons, markdown=False)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # Model and direction read left-aligned; numbers right-aligned so decimals line up.
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def format_markdown(results: dict, comparisons: dict | None = None) -> str:
    """GitHub-flavoured markdown table, one row per model x direction."""
    header, rows = _rows(results, comparisons, markdown=True)
    align = ["---", "---"] + ["---:"] * (len(header) - 2)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "| " + " | ".join(align) + " |", *(line(r) for r in rows)]
    sources = _sources(comparisons)
    if sources:
        out.append("")
        out.extend(f"- Published {model}: {src}" for model, src in sources)
    return "\n".join(out) + "\n"


def _rows(
    results: dict, comparisons: dict | None, markdown: bool
) -> tuple[list[str], list[list[str]]]:
    models = results.get("models") if isinstance(results, dict) else None
    if not models:
        raise InputError("no model results to report; run the benchmark on at least one model.")
    recalls = _recall_keys(models)
    comparisons = comparisons or {}

    header = ["Model", "Direction", *recalls, "medR"]
    if comparisons:
        header += [f"Pub {k}" for k in recalls]
    rows = []
    first = next(iter(models.values()))
    for i, (model, metrics) in enumerate(models.items()):
        for key, plain, fancy in _DIRECTIONS:
            ours = metrics.get(key)
            if ours is None:
                continue
            row = [str(model), fancy if markdown else plain]
            base = (first.get(key) or {}) if i else {}
            row += [_pct(ours.get(k)) + _gain(ours.get(k), base.get(k)) for k in recalls]
            row.append(_rank(ours.get("median_rank")))
            if comparisons:
                theirs = (comparisons.get(model) or {}).get(key) or {}
                row += [_published_cell(theirs.get(k)) for k in recalls]
            rows.append(row)
    return header, rows


def _recall_keys(models: dict) -> list[str]:
    """All R@k keys present, in increasing k (R@1, R@5, R@10 by default)."""
    ks = {
        int(m.group(1))
        for metrics in models.values()
        for key, _, _ in _DIRECTIONS
        for name in (metrics.get(key) or {})
        if (m := _RECALL.match(name))
    }
    return [f"R@{k}" for k in sorted(ks)]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _gain(value: float | None, base: float | None) -> str:
    return "" if value is None or base is None else f" ({100 * (value - base):+.1f})"


def _rank(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}".removesuffix(".0")  # medians are whole or .5


def _published_cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{100 * entry['published']:.1f} ({100 * entry['diff']:+.1f})"


def _sources(comparisons: dict | None) -> list[tuple[str, str]]:
    return [
        (model, cmp["source"])
        for model, cmp in (comparisons or {}).items()
        if isinstance(cmp, dict) and cmp.get("source")
    ]
