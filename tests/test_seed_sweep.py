"""benchmarks/seed_sweep.py: collects each run's headline and baseline, judges them, and merges records."""

from __future__ import annotations

import json

from _scripts import load_script

sweep = load_script("seed_sweep", "benchmarks")


def _fake_run(folder, seed, threads, value, baseline, status="ok"):
    out = folder / f"seed{seed}_threads{threads}"
    out.mkdir(parents=True)
    (out / "summary.json").write_text(
        json.dumps([{"notebook": "04_attention.ipynb", "seconds": 12.5, "status": status}])
    )
    recs = [
        {
            "notebook": "04_attention",
            "kind": "metric",
            "name": "rnn_no_attention_long_exact_match",
            "value": baseline,
        },
        {
            "notebook": "04_attention",
            "kind": "headline",
            "name": "rnn_attention_exact_match",
            "value": value,
        },
    ]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_collect_reads_headline_and_baseline(tmp_path):
    _fake_run(tmp_path, 0, 1, 99.0, 12.0)
    row = sweep.collect(tmp_path / "seed0_threads1")["04_attention"]
    assert row["value"] == 99.0 and row["baseline"] == 12.0 and row["seconds"] == 12.5


def test_a_run_below_its_margin_fails_the_sweep_and_records_merge_per_run(tmp_path, capsys):
    _fake_run(tmp_path, 0, 1, 99.0, 12.0)
    _fake_run(
        tmp_path, 1, 1, 85.0, 70.0
    )  # above the 80% target, but only 15 points over the baseline
    record = tmp_path / "measured.json"
    record.write_text(
        json.dumps(
            {
                "04_attention": [
                    {"seed": 1, "threads": 1, "value": 1.0, "seconds": 1.0},
                    {"seed": 5, "threads": 2, "value": 98.0, "seconds": 9.0},
                ]
            }
        )
    )
    code = sweep.main(
        [
            "--only",
            "04",
            "--seeds",
            "0,1",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
            "--no-run",
            "--record",
            str(record),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "NO" in out and "30 needed" in out
    runs = json.loads(record.read_text())["04_attention"]
    # the re-measured (1, 1) replaces the old entry; the (5, 2) run from before is kept
    assert [(r["seed"], r["threads"], r["value"]) for r in runs] == [
        (0, 1, 99.0),
        (1, 1, 85.0),
        (5, 2, 98.0),
    ]
