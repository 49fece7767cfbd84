"""Write ShapesEval's versioned prompt file from its seeded generator: python scripts/make_shapes_eval.py"""

import json
from pathlib import Path

from tessera.eval.shapes_eval import VERSION, make_metadata

out = Path(__file__).resolve().parents[1] / "tessera" / "eval" / "data" / f"shapes_eval_{VERSION}.jsonl"
lines = make_metadata(seed=0)
out.write_text("".join(json.dumps(line) + "\n" for line in lines))
print(f"wrote {len(lines)} prompts to {out}")
