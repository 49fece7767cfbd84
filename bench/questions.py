"""How the world's training questions' answers fall, per kind: the three commonest and their shares. A kind whose
commonest answer is most of it can be scored well by a reader that always gives that answer.

python bench/questions.py [--n 4000]
"""

import argparse
import collections

import numpy as np

from tessera.data.examples import understanding_example
from tessera.world.grammar import parse_question


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="questions drawn (seed 0)")
    n = parser.parse_args().n
    rng, answers = np.random.default_rng(0), collections.defaultdict(collections.Counter)
    for _ in range(n):
        question, answer, _ = understanding_example("qa", rng, 64)
        answers[parse_question(question).kind][answer] += 1
    for kind, counts in sorted(answers.items()):
        total = sum(counts.values())
        print(kind, total, ", ".join(f"{a} {c / total:.2f}" for a, c in counts.most_common(3)))


if __name__ == "__main__":
    main()
