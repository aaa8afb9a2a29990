"""The docs: the site builds strictly, the command output it shows is what the product prints, and the README's
links lead to its pages. The build needs MkDocs and Material for MkDocs (the `docs` extra): it is skipped where they
are missing, except with EXPERIMENTSTASH_REQUIRE_DOCS=1 (CI), where it must run."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

DOCS = REPO / "docs"


def load_examples():
    spec = importlib.util.spec_from_file_location("docs_examples", DOCS / "examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs_missing() -> str | None:
    for module, package in (("mkdocs", "mkdocs"), ("material", "mkdocs-material")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


@pytest.mark.skipif(mkdocs_missing() is not None and not os.environ.get("EXPERIMENTSTASH_REQUIRE_DOCS"),
                    reason=f"{mkdocs_missing()} is not installed (pip install -e '.[docs]')")
def test_the_docs_build_strictly_with_every_page_and_example(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr + build.stdout
    pages = sorted(path.stem for path in DOCS.glob("*.md"))
    for page in pages:
        html = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert html.is_file(), f"docs/{page}.md was not built"
        assert "--8&lt;--" not in html.read_text() and "--8<--" not in html.read_text(), f"{page}: an example not included"
    # an included example shows up in its page as the product printed it (HTML-escaped, highlighted per token)
    compare = (site / "results" / "index.html").read_text()
    assert "groups over seed (mean ± sample std)." in compare
    assert not (site / "examples.py").exists() and not (site / "examples").exists()


def test_the_examples_in_the_docs_are_what_the_product_prints():
    examples = load_examples()
    found = examples.differences(examples.generate())
    assert not found, "\n".join(found) + "\nRun `python docs/examples.py` to write them."


def test_every_link_of_the_readme_leads_to_a_file():
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert "docs/getting-started.md" in targets
    missing = [target for target in targets if "://" not in target and not (REPO / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
