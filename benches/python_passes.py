"""The Python twin of `services/lib/classifier/examples/passes.rs`, for benches/instructions.sh:
score the parity fixture `passes` times in batches of `batch` on one intra-op thread."""

import sys

from python_minilm import Scorer

passes, batch = int(sys.argv[1]), int(sys.argv[2])
scorer = Scorer(threads=1)
for _ in range(passes):
    if batch == 1:
        scorer.arrival(1)
    else:
        scorer.grouped(batch)
