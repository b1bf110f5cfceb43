"""``benchmarks/run.py`` makes the corpus again when the one it finds is not the generator's plan."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.generate import generate_corpus
from benchmarks.run import corpus_is_current


def test_a_corpus_is_current_only_with_the_planned_scenarios(tmp_path: Path) -> None:
    assert not corpus_is_current(tmp_path / "none", 6, seed=1)
    paths = generate_corpus(tmp_path, 6, seed=1)
    assert corpus_is_current(tmp_path, 6, seed=1)
    assert not corpus_is_current(tmp_path, 6, seed=2)  # same count, another plan
    shutil.move(paths[0], tmp_path / "aa_basic-99999")  # an older family table's names
    assert not corpus_is_current(tmp_path, 6, seed=1)
