"""The run report: written by every run, rebuilt by `mirmatch report`, small, escaped, and sound in a browser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pipelines.cli import main
from pipelines.report.build import REPORT_DIR, accepted_matches, sampled_tracks
from pipelines.report.page import figure, table
from tests.conftest import read_table

MAX_REPORT_BYTES = 20 << 20
KINDS = ("alignment", "ssm", "graph", "hist")


def expected_figures(out: Path, top_matches: int = 12, n_tracks: int = 6) -> dict[str, int]:
    """How many figures of each kind the report of the run in ``out`` must have, from its tables."""
    tracks = read_table(out, "tracks")
    accepted = [m for m in read_table(out, "matches") if m["is_match"]]
    ok_ids = {t["track_id"] for t in tracks if t["status"] == "ok"}
    versions = [c for c in read_table(out, "clusters") if c["cluster_size"] > 1]
    hist = int(bool(read_table(out, "matches"))) + int(any(c["nearest_version_similarity"] is not None
                                                           for c in read_table(out, "clusters")))
    return {"alignment": min(top_matches, len(accepted)), "ssm": min(n_tracks, len(ok_ids)),
            "graph": int(bool(versions)), "hist": hist}


def figures_in(html: str) -> dict[str, list[str]]:
    """Image sources of each kind of figure on the page."""
    found = {kind: [] for kind in KINDS}
    for kind, src in re.findall(r'<img class="fig (\w+)" src="([^"]+)"', html):
        found[kind].append(src)
    return found


def report_bytes(out: Path) -> int:
    return sum(f.stat().st_size for f in (out / REPORT_DIR).iterdir())


def test_every_run_writes_a_small_report(pipeline_out):
    index = pipeline_out / REPORT_DIR / "index.html"
    assert index.is_file()
    assert report_bytes(pipeline_out) < MAX_REPORT_BYTES
    html = index.read_text()
    found = figures_in(html)
    expected = expected_figures(pipeline_out)
    assert {k: len(v) for k, v in found.items()} == expected
    assert expected["alignment"] >= 3 and expected["ssm"] == 6 and expected["graph"] == 1  # the corpus has them
    for srcs in found.values():
        for src in srcs:
            assert (pipeline_out / REPORT_DIR / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the failed inputs are listed, and the run's own counters and decision cuts are shown
    for row in read_table(pipeline_out, "errors"):
        assert row["uri"] in html
    assert "tracks_analyzed" in html and "cluster_similarity" in html and "match_confidence" in html


def test_report_rebuilds_a_finished_folder(pipeline_out, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(pipeline_out, out)
    shutil.rmtree(out / REPORT_DIR)
    assert main(["report", str(out), "--top-matches", "1", "--sampled-tracks", "2"]) == 0
    assert "report" in capsys.readouterr().err
    html = (out / REPORT_DIR / "index.html").read_text()
    assert {k: len(v) for k, v in figures_in(html).items()} == expected_figures(out, 1, 2)
    # the same run id as the run's own report, and its settings from OUT/history/runs
    first = (pipeline_out / REPORT_DIR / "index.html").read_text()
    run_id = re.search(r"<title>mirmatch run (\S+)</title>", first).group(1)
    assert f"<title>mirmatch run {run_id}</title>" in html and "cluster_similarity" in html


def test_report_on_a_folder_without_tables_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mirmatch: error:") and "no mirmatch tables" in err[0]
    assert not (tmp_path / REPORT_DIR).exists()


def test_no_report_flag_and_strings_from_data_are_escaped(tiny_corpus, tmp_path):
    weird = tmp_path / "<img src=x onerror=alert(1)>.wav"
    weird.write_text("not a recording & not <audio>\n")
    out = tmp_path / "out"
    midi = sorted(Path(tiny_corpus["root"]).glob("midi/*.mid"))[0]
    assert main(["run", "--midi", str(midi), "--audio", str(weird), "--out", str(out), "--no-report"]) == 0
    assert not (out / REPORT_DIR).exists()
    assert main(["report", str(out)]) == 0
    html = (out / REPORT_DIR / "index.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.wav" in html
    assert {k: len(v) for k, v in figures_in(html).items()} == expected_figures(out)


def test_tables_are_capped_with_a_note():
    html = table(["n", "name"], [(i, f"<{i}>") for i in range(600)], 500, "matches")
    assert html.count("<tr>") == 501  # the header and 500 rows
    assert "The first 500 of 600 matches are shown" in html and "&lt;499&gt;" in html and "<499>" not in html
    assert 'alt="a &quot;b&quot; &lt;c&gt;"' in figure("x.png", "hist", 'a "b" <c>')


def test_drawn_matches_and_tracks_are_chosen_deterministically():
    rows = [{"track_id": f"{i:02d}", "uri": f"u{i}", "modality": "audio" if i % 3 else "midi",
             "status": "ok" if i != 4 else "error"} for i in range(12)]
    chosen = sampled_tracks(rows[::-1], 6)
    assert [t["track_id"] for t in chosen] == ["01", "00", "02", "03", "05", "06"]
    assert sampled_tracks(rows, 6) == chosen
    matches = [{"is_match": c > 0.5, "confidence": c, "midi_uri": u, "audio_uri": "a"}
               for c, u in ((0.9, "b"), (0.4, "c"), (0.9, "a"), (0.7, "d"))]
    assert [m["midi_uri"] for m in accepted_matches(matches)] == ["a", "b", "d"]


# --- in a real browser --------------------------------------------------------------------------------

BROWSER_CHECK = """() => ({
  images: [...document.images].map(i => ({cls: i.className, src: i.getAttribute('src'), complete: i.complete,
                                          width: i.naturalWidth})),
  links: [...document.querySelectorAll('[href]')].map(a => a.getAttribute('href')),
  sources: [...document.querySelectorAll('[src]')].map(a => a.getAttribute('src')),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  sections: [...document.querySelectorAll('section > h2')].map(h => h.textContent),
})"""


def test_report_renders_in_a_browser(pipeline_out):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (the Debian package `chromium`; `make setup` installs it)")
    from playwright.sync_api import sync_playwright

    folder = pipeline_out / REPORT_DIR
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto((folder / "index.html").as_uri(), wait_until="load")
            seen = page.evaluate(BROWSER_CHECK)
        finally:
            browser.close()
    assert not failed, failed
    assert seen["sections"][0] == "Summary" and seen["sections"][-1] == "Errors"
    counts = {kind: sum(f"fig {kind}" == img["cls"] for img in seen["images"]) for kind in KINDS}
    assert counts == expected_figures(pipeline_out)
    assert seen["images"] and all(img["complete"] and img["width"] > 0 for img in seen["images"]), seen["images"]
    for ref in seen["links"] + seen["sources"]:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc, f"{ref}: the report links outside itself"
        if not parts.path:
            assert parts.fragment in seen["ids"], f"{ref}: no such anchor"
        else:
            assert (folder / unquote(parts.path)).exists(), f"{ref}: broken link"
