"""`raspsynth data stats`: distributions over a generated dataset.

In: a dataset directory. Out: counts by split, program length (SOps), op
kind, layer count and d_model, as a dict and as printable text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from raspsynth.data.shards import iter_records


def dataset_stats(directory: str | Path) -> dict[str, Any]:
    splits, lengths, kinds, layers, d_model = Counter(), Counter(), Counter(), Counter(), Counter()
    total = 0
    for record in iter_records(directory):
        total += 1
        splits[record["split"]] += 1
        lengths[record["num_sops"]] += 1
        kinds.update(record["kinds"])
        layers[record["num_layers"]] += 1
        d_model[_bucket(record["d_model"])] += 1
    return {
        "programs": total,
        "split": dict(sorted(splits.items())),
        "length (SOps)": dict(sorted(lengths.items())),
        "programs using op kind": dict(sorted(kinds.items())),
        "layers": dict(sorted(layers.items())),
        "d_model": dict(sorted(d_model.items(), key=lambda kv: int(kv[0].split("-")[0]))),
    }


def _bucket(d_model: int, width: int = 25) -> str:
    low = (d_model // width) * width
    return f"{low}-{low + width - 1}"


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"programs: {stats['programs']}"]
    for name, counts in stats.items():
        if name == "programs":
            continue
        lines.append(f"{name}:")
        top = max(counts.values(), default=1)
        for key, count in counts.items():
            bar = "#" * max(1, round(30 * count / top))
            lines.append(f"  {key!s:>24} {count:7d} {bar}")
    return "\n".join(lines)
