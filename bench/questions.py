"""How the world's training questions' answers fall, per kind: the three commonest and their shares, and what a
reader that sees only the question's words scores (fitted on the first 5/6 of a kind's questions, scored on the
rest, beside the rest's commonest answer). A kind either reader scores well on can be passed without looking.

python bench/questions.py [--n 30000]
"""

import argparse
import collections

import numpy as np

from tessera.data.examples import understanding_example
from tessera.understand.words_only import words_reader
from tessera.world.grammar import parse_question


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30000, help="questions drawn (seed 0)")
    n = parser.parse_args().n
    rng, asked = np.random.default_rng(0), collections.defaultdict(list)
    for _ in range(n):
        question, answer, _ = understanding_example("qa", rng, 64)
        asked[parse_question(question).kind].append((question, answer))
    for kind, pairs in sorted(asked.items()):
        counts, cut = collections.Counter(a for _, a in pairs), len(pairs) * 5 // 6
        read, held = words_reader(pairs[:cut]), pairs[cut:]
        words = np.mean([read(q) == a for q, a in held])
        base = collections.Counter(a for _, a in held).most_common(1)[0][1] / len(held)
        commonest = ", ".join(f"{a} {c / len(pairs):.2f}" for a, c in counts.most_common(3))
        print(f"{kind} {len(pairs)} {commonest}; words only {words:.3f} (commonest {base:.3f})")


if __name__ == "__main__":
    main()
