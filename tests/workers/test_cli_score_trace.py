"""``shadowshift score-trace``: every NAB and ASD file, multi-column traces, causality, messy
and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.asd import ASD_DIR, asd_available, asd_files
from models.nab import NAB_DIR, SERIES_FOLDER, nab_available
from models.predictor import DEFAULT_MODEL_PATH, metadata_path_for
from workers.cli import main

REPO = Path(__file__).resolve().parents[2]
NAB_FILES = sorted((NAB_DIR / SERIES_FOLDER).glob("*.csv")) if nab_available() else []
ASD_FILES = asd_files() if asd_available() else []


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not NAB_FILES, reason=f"NAB data not found in {NAB_DIR}")
@pytest.mark.parametrize("nab_file", NAB_FILES, ids=lambda p: p.stem)
def test_scores_every_nab_file(nab_file: Path, tmp_path: Path) -> None:
    """One output row per input row, in order, with valid probabilities and decisions."""
    out = tmp_path / "scores.csv"
    assert main(["score-trace", str(nab_file), "--output", str(out)]) == 0
    rows = _rows(out)
    source = _rows(nab_file)
    assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in source]
    assert list(rows[0]) == ["timestamp", "failure_probability", "readiness_score", "decision"]
    probability = np.array([float(r["failure_probability"]) for r in rows])
    assert ((probability >= 0) & (probability <= 1)).all()
    assert {r["decision"] for r in rows} <= {"hold", "migrate"}


@pytest.mark.slow
@pytest.mark.skipif(not ASD_FILES, reason=f"ASD data not found in {ASD_DIR}")
@pytest.mark.parametrize("asd_file", ASD_FILES, ids=lambda p: p.stem)
def test_scores_every_asd_file_with_all_19_columns(asd_file: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """All 19 unnamed metrics of a 45-day server, through the shorthand: one row out per row
    in, probabilities in 0..1 (about 4 s per file: the baselines learn every row)."""
    out = tmp_path / "scores.csv"
    assert main(["score-trace", str(asd_file), "--columns", "m01..m19:other",
                 "--output", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == len(_rows(asd_file)) == 12960
    probability = np.array([float(r["failure_probability"]) for r in rows])
    assert ((probability >= 0) & (probability <= 1)).all() and probability.std() > 0
    assert capsys.readouterr().err == ""


def _multi_column_trace(path: Path, rows: int = 300) -> Path:
    rng = np.random.default_rng(4)
    with path.open("w") as f:
        f.write("time,cpu,mem,disk\n")
        for i in range(rows):
            leak = 40 + 58 * max(0, i - 150) / 150
            cpu = "" if i % 17 == 0 else f"{30 + rng.normal(0, 3):.2f}"
            f.write(f"2024-03-01T00:00:00Z,{cpu},{leak:.2f},{2 + rng.random():.2f}\n"
                    .replace("00:00:00", f"{i * 5 // 60:02d}:{i * 5 % 60:02d}:00")
                    if i < 288 else
                    f"2024-03-02T{(i - 288) * 5 // 60:02d}:{(i - 288) * 5 % 60:02d}:00Z,"
                    f"{cpu},{leak:.2f},{2 + rng.random():.2f}\n")
    return path


def _multi_args(trace: Path) -> list[str]:
    return ["score-trace", str(trace), "--time-column", "time",
            "--value-column", "cpu", "--metric", "cpu", "--value-column", "mem",
            "--metric", "memory", "--value-column", "disk", "--metric", "disk_latency"]


def test_multi_column_trace_and_plot(tmp_path: Path) -> None:
    """Several value columns, each with its metric; a plot is written on request."""
    trace = _multi_column_trace(tmp_path / "multi.csv")
    out, png = tmp_path / "out.csv", tmp_path / "out.png"
    assert main([*_multi_args(trace), "--output", str(out), "--plot", str(png)]) == 0
    rows = _rows(out)
    assert len(rows) == 300
    assert png.stat().st_size > 1000
    # The leak ends at 98 % memory: the model should see trouble coming by the end.
    late = [float(r["failure_probability"]) for r in rows[-30:]]
    early = [float(r["failure_probability"]) for r in rows[50:100]]
    assert max(late) > max(early)


def test_prefix_of_a_trace_scores_like_the_prefix_of_the_run(tmp_path: Path) -> None:
    """Scoring the first k rows gives exactly the first k rows of scoring everything."""
    trace = _multi_column_trace(tmp_path / "multi.csv")
    prefix = tmp_path / "prefix.csv"
    prefix.write_text("".join(trace.read_text().splitlines(keepends=True)[:201]))
    full_out, prefix_out = tmp_path / "full.csv", tmp_path / "prefix_out.csv"
    assert main([*_multi_args(trace), "--output", str(full_out)]) == 0
    args = _multi_args(prefix)
    assert main([*args, "--output", str(prefix_out)]) == 0
    assert _rows(prefix_out) == _rows(full_out)[:200]


def test_stdout_output_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --output the CSV goes to stdout and a one-line summary to stderr."""
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,value\n" + "".join(f"{i * 300},{i % 7}\n" for i in range(50)))
    assert main(["score-trace", str(trace)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "timestamp,failure_probability,readiness_score,decision"
    assert len(captured.out.splitlines()) == 51
    assert "50 rows" in captured.err and "migrate episodes" in captured.err


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("timestamp,value\n", [], "no data rows"),
        ("", [], "empty"),
        ("when,value\n1,2\n", [], "column 'timestamp' not found"),
        ("timestamp,value\nnot-a-time,1\n", [], "cannot parse timestamp"),
        ("timestamp,a\n1,2\n", ["--value-column", "a", "--metric", "cpu", "--value-column",
                                "b", "--metric", "memory"], "column 'b'"),
        ("timestamp,a,b\n1,2,3\n", ["--value-column", "a", "--value-column", "b",
                                    "--metric", "cpu"], "one --metric per"),
        ("timestamp,value\n1,2\n", ["--metric", "bogus"], "invalid choice"),
        ("timestamp,value\n1,2\n", ["--model", "/nonexistent/model.txt"], "cannot read model"),
        ("timestamp,value\n1,x\n2,y\n", [], "holds no numbers"),
        ("timestamp,m1\n1,2\n", ["--columns", "m1..m3"], "column 'm2' not found"),
        ("timestamp,m1\n1,2\n", ["--columns", "m3..m1"], "backwards"),
        ("timestamp,m1\n1,2\n", ["--columns", "m1", "--value-column", "m1"], "not both"),
        ("timestamp,value\n3,1\n2,2\n1,3\n", [], "sort the file oldest first"),
        ("timestamp,value\n1,2\n", ["--history", "2"], "--history"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: str, args: list[str], message: str) -> None:
    """Unusable CSVs and arguments: exit code 2 and a single error line on stderr."""
    trace = tmp_path / "bad.csv"
    trace.write_text(content)
    assert main(["score-trace", str(trace), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_ten_thousand_columns_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A 10,000-column file scored whole: exit 2, one line."""
    trace = tmp_path / "wide.csv"
    names = [f"c{i:05d}" for i in range(10_000)]
    trace.write_text("timestamp," + ",".join(names) + "\n0," + ",".join(["1"] * 10_000) + "\n")
    assert main(["score-trace", str(trace), "--columns", "c*"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at most" in err


def test_model_for_other_features_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A model whose metadata names another feature list: exit 2, one line, no traceback."""
    model = tmp_path / "other.txt"
    model.write_bytes(DEFAULT_MODEL_PATH.read_bytes())
    metadata = json.loads(metadata_path_for(DEFAULT_MODEL_PATH).read_text())
    metadata["feature_names"] = [*metadata["feature_names"][:-1], "something_else"]
    metadata_path_for(model).write_text(json.dumps(metadata))
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,value\n" + "".join(f"{i * 300},{i % 7}\n" for i in range(20)))
    assert main(["score-trace", str(trace), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other features" in err


def test_repeated_other_columns_and_clock_step(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Three unnamed columns (``--metric other`` thrice) and a 55-minute backward clock step:
    scored, every row out, the step reported on stderr."""
    stamps = [i * 300 for i in range(100)] + [99 * 300 - 3600 + i * 300 for i in range(1, 101)]
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,a,b,c\n" + "".join(
        f"{t},{i % 7},{(i * 3) % 11},{i % 5}\n" for i, t in enumerate(stamps)))
    args = ["score-trace", str(trace)]
    for column in "abc":
        args += ["--value-column", column, "--metric", "other"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 201
    assert "clock stepped back 55 min at data row 101" in captured.err
    assert "3 columns" in captured.err and "1 clock steps repaired" in captured.err


def test_forecast_column_names_what_runs_out(tmp_path: Path) -> None:
    """A filling disk: ``--forecast`` says when it is full, in the reason's words."""
    trace = tmp_path / "disk.csv"
    trace.write_text("timestamp,used\n" + "".join(
        f"{i * 300},{50 + 0.5 * i:.2f}\n" for i in range(60)))
    out = tmp_path / "out.csv"
    assert main(["score-trace", str(trace), "--columns", "used:disk_used", "--forecast",
                 "--output", str(out)]) == 0
    last = _rows(out)[-1]
    assert last["forecast"].startswith("disk full in ")


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    """``python -m workers.cli`` works and returns the exit code."""
    result = subprocess.run([sys.executable, "-m", "workers.cli", "score-trace",
                             str(tmp_path / "missing.csv")], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_messy_export_is_scored_not_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicate timestamps, a column that is all empty, a constant column, negative CPU and
    a six-hour gap: every row is scored (one out per row in), nothing is refused, and stderr
    says what was ignored or noted."""
    stamps = [i * 300 for i in range(60)]
    stamps[10] = stamps[9]  # a duplicate
    stamps += [stamps[-1] + 6 * 3600 + i * 300 for i in range(1, 41)]  # after a gap
    body = "".join(f"{t},{-5 if i % 13 == 0 else 20 + i % 9},,42\n" for i, t in enumerate(stamps))
    trace = tmp_path / "messy.csv"
    trace.write_text("timestamp,cpu,empty,flat\n" + body)
    assert main(["score-trace", str(trace), "--columns", "cpu:cpu,empty:other,flat:other"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(captured.out.splitlines()))
    assert [int(float(r["timestamp"])) for r in rows] == stamps
    probability = np.array([float(r["failure_probability"]) for r in rows])
    assert ((probability >= 0) & (probability <= 1)).all()
    assert "repeat the timestamp" in captured.err and "'empty' has no values" in captured.err
    # Ignored and counted: every empty cell and every negative CPU reading.
    negative = sum(1 for i in range(len(stamps)) if i % 13 == 0)
    assert f"{len(stamps) + negative} values ignored" in captured.err
