"""Everything shipped in data/ has its sha256 written down in data/README.md, and the sums match."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
LISTED = dict((path, digest) for digest, path in
              re.findall(r"^([0-9a-f]{64})  (\S+)$", (DATA / "README.md").read_text(), flags=re.M))
SHIPPED = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*")
                 if p.is_file() and p.suffix != ".md" and p.name != "rebuild.sh")


def test_the_readme_lists_sums():
    assert len(LISTED) >= 8, LISTED


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_file_has_its_sha256_in_the_data_readme(path):
    assert path in LISTED, f"data/{path} is shipped but data/README.md gives no sha256 line for it"
    digest = hashlib.sha256((DATA / path).read_bytes()).hexdigest()
    assert digest == LISTED[path], f"data/{path}: sha256 {digest} differs from data/README.md"


@pytest.mark.parametrize("path", sorted(LISTED))
def test_every_listed_file_is_shipped(path):
    assert (DATA / path).is_file(), f"data/README.md lists data/{path}, which is not in the repository"
