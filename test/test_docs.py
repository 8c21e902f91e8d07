"""The user documentation: numbers match their results files, pages describe what ships."""

import json
import re
import shutil
from pathlib import Path

import pytest

from lsi_ros import results_tables

ROOT = Path(__file__).resolve().parents[1]
# A decimal (18.71, 0.6) or a number with thousands separators (2,048; 1,000,000).
NUMBER = re.compile(r"(?<![\w.,/:-])(\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![\w.]*\d)")
# Words that narrate how the work was done rather than what ships (the technical exceptions: the
# serial ADC protocol's STOP command and CMake's Release build type, written that way).
NARRATION = re.compile(r"\bstop\b|lease|session|issue #|#[0-9]+\b", re.IGNORECASE)
ALLOWED = re.compile(r"`STOP`|STOP\b|CMAKE_BUILD_TYPE=Release")
# The pages this project's user documentation consists of; every one is checked for narration.
PAGES = (
    "README.md",
    "docs/results.md",
    "docs/hardware.md",
    "docs/training.md",
    "docs/calibration.md",
    "docs/serial_adc_protocol.md",
    "docs/nodes.md",
    "docs/reliability.md",
    "docs/web_view.md",
    "docs/generator.md",
    "docs/real_faces.md",
    "docs/framing.md",
    "docs/ros2.md",
    "experiments/README.md",
)
# Pages linked from the checked pages without being checked themselves.
COMPANION_PAGES: set[str] = set()


def result_values() -> set[float]:
    """Every number in docs/results/*.json: values, and numbers written inside strings and keys."""
    found: set[float] = set()

    def walk(node) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, int | float):
            found.add(float(node))
        elif isinstance(node, str):
            found.update(float(x) for x in re.findall(r"\d+(?:\.\d+)?", node.replace(",", "")))
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(key)
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in (ROOT / results_tables.RESULTS).glob("*.json"):
        walk(json.loads(path.read_text()))
    return found


def matches(text: str, values: set[float]) -> bool:
    """Whether the number as written is some result rounded to the digits shown (or as a percent)."""
    shown = float(text.replace(",", ""))
    digits = len(text.split(".")[1]) if "." in text else 0
    return any(round(v, digits) == shown or round(100 * v, digits) == shown for v in values)


def test_results_tables_match_their_files():
    assert results_tables.stale(ROOT) == [], "run `lsi docs` to regenerate the tables"


def test_every_page_carries_its_generated_tables():
    readme = results_tables.blocks((ROOT / "README.md").read_text())
    results = results_tables.blocks((ROOT / "docs/results.md").read_text())
    assert readme == ["summary", "real-faces"]
    assert set(results) == set(results_tables.GENERATORS) - {"summary"}


def test_a_changed_result_makes_the_pages_stale(tmp_path):
    """The check can fail: one number changed in a results file shows up in both pages."""
    for page in results_tables.PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, tmp_path / page)
    shutil.copytree(ROOT / results_tables.RESULTS, tmp_path / results_tables.RESULTS)
    assert results_tables.stale(tmp_path) == []
    quality_path = tmp_path / results_tables.RESULTS / "quality.json"
    quality = json.loads(quality_path.read_text())
    row = results_tables.pick(quality["rows"], method="lsi", M=128, noise="photons=200")
    row["psnr"] += 1.0
    quality_path.write_text(json.dumps(quality))
    assert results_tables.stale(tmp_path) == list(results_tables.PAGES)
    results_tables.write(tmp_path)
    assert results_tables.stale(tmp_path) == []
    assert f"{row['psnr']:.2f}" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("page", results_tables.PAGES)
def test_hand_written_numbers_are_results(page):
    """Outside the generated tables, a decimal or a grouped number must be a value of the results."""
    values = result_values()
    text = results_tables.outside_blocks((ROOT / page).read_text())
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"`[^`]*`", "", text)  # code: commands, versions, identifiers
    unknown = [n for n in NUMBER.findall(text) if not matches(n, values)]
    assert unknown == [], f"{page}: numbers that no results file holds: {unknown}"


def test_the_number_check_catches_an_invented_number():
    values = result_values()
    assert matches("20.53", values) and matches("2,048", values)
    assert not matches("20.54", values) and not matches("2,049", values)


@pytest.mark.parametrize("page", PAGES)
def test_pages_do_not_narrate_the_work(page):
    lines = (ROOT / page).read_text().splitlines()
    hits = [line for line in lines if NARRATION.search(ALLOWED.sub("", line))]
    assert hits == []


def test_scripts_do_not_narrate_the_work():
    hits = [
        f"{path.name}: {line}"
        for path in sorted((ROOT / "scripts").iterdir())
        for line in path.read_text().splitlines()
        if NARRATION.search(ALLOWED.sub("", line))
    ]
    assert hits == []


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_local_links_resolve():
    """Every relative link of the documentation points at a file of the repository."""
    broken = []
    for page in PAGES:
        path = ROOT / page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            resolved = (path.parent / target).resolve()
            if re.match(r"[a-z]+:", target) or resolved.exists():
                continue
            if resolved.relative_to(ROOT).as_posix() not in COMPANION_PAGES:
                broken.append(f"{page}: {target}")
    assert broken == []
