"""Write ShapesEval's versioned prompt files from their seeded generators: python scripts/make_shapes_eval.py"""

import json
from pathlib import Path

from tessera.eval.shapes_eval import VERSION, make_compositional, make_metadata

data = Path(__file__).resolve().parents[1] / "tessera" / "eval" / "data"
for name, lines in (
    (f"shapes_eval_{VERSION}.jsonl", make_metadata(seed=0)),
    (f"compositional_{VERSION}.jsonl", make_compositional(seed=0)),
):
    (data / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"wrote {len(lines)} prompts to {data / name}")
