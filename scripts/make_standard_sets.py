"""Write ``src/bbcu/data/standard_sets.json`` from the shared data folder's ``MANIFEST.tsv``.

The bundled sets' entries (file stem, width, height, channels, sha256 of the decoded pixels) come from
that manifest, whose ``pixels_sha256`` is the sha256 of exactly the array ``bbcu.formats.image_io.read_image``
returns; the official LR files are left out (``bbcu.data.manifest`` checks the clean images a set is
scored against). The sets that are not bundled carry only their published image counts, which live in
``COUNT_ONLY`` below. Run from the checkout: ``.venv/bin/python scripts/make_standard_sets.py``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from bbcu.core.atomic import atomic_write_bytes
from bbcu.data.manifest import MANIFEST_FORMAT, MANIFEST_PATH
from bbcu.data.root import data_root

COUNT_ONLY = {
    "Urban100": {"count": 100, "source": "Huang et al., CVPR 2015: 100 urban scenes (SR test)"},
    "Manga109": {"count": 109, "source": "Matsui et al., 2017: 109 manga volumes, one page each (SR test)"},
    "DIV2K": {"count": 800, "source": "Agustsson & Timofte, NTIRE 2017: DIV2K_train_HR, 0001.png-0800.png"},
    "DIV2K_valid": {
        "count": 100,
        "source": "Agustsson & Timofte, NTIRE 2017: DIV2K_valid_HR, 0801.png-0900.png",
    },
}


def main() -> int:
    """Read the manifest beside the data, write the package's JSON."""
    root = data_root(sys.argv[1] if len(sys.argv) > 1 else None)
    sets: dict[str, dict] = {}
    with open(root / "MANIFEST.tsv", encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file, delimiter="\t"):
            folder, _, name = row["file"].rpartition("/")
            if folder not in ("", "HR"):
                continue  # official LR files: not a clean image of the set
            entry = sets.setdefault(row["set"], {"source": f"{row['source_repo']} (bundled)", "images": {}})
            size = [int(row["width"]), int(row["height"]), int(row["channels"])]
            entry["images"][Path(name).stem] = [*size, row["pixels_sha256"]]
    for entry in sets.values():
        entry["count"] = len(entry["images"])
    everything = {**dict(sorted(sets.items())), **COUNT_ONLY}
    atomic_write_bytes(MANIFEST_PATH, render(everything).encode())
    print(f"wrote {MANIFEST_PATH} ({len(everything)} sets)")
    return 0


def render(sets: dict[str, dict]) -> str:
    """The JSON document with one line per set header and per image, so diffs stay readable."""
    blocks = []
    for name, entry in sets.items():
        head = {key: value for key, value in entry.items() if key != "images"}
        text = json.dumps(name) + ": " + json.dumps(head)[:-1]
        if "images" in entry:
            lines = (f"{json.dumps(stem)}: {json.dumps(value)}" for stem, value in entry["images"].items())
            text += ', "images": {\n' + ",\n".join(lines) + "}"
        blocks.append(text + "}")
    return f'{{"format": "{MANIFEST_FORMAT}", "sets": {{\n' + ",\n".join(blocks) + "\n}}\n"


if __name__ == "__main__":
    sys.exit(main())
