"""The report of a HIL campaign: report.json, report.md (one table) and rates.png (points/s produced
vs stored, fault windows shaded).  The plot needs matplotlib (the ``hil`` extra); without it the
JSON and Markdown are still written and the report says the plot is missing."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hil.campaign import CampaignResult

__all__ = ["markdown_table", "summary", "write_report"]

COLUMNS = ("scenario", "produced", "accepted", "delivered", "lost", "duplicates", "dropped_counted",
           "p99_latency_ms", "recovery_s", "passed")


def summary(r: CampaignResult) -> dict[str, Any]:
    j = r.judgement
    return {
        "scenario": r.scenario.name,
        "produced": j.produced,
        "accepted": j.accepted,
        "delivered": j.delivered,
        "lost": j.lost,
        "duplicates": j.duplicates,
        "dropped_counted": j.dropped_counted,
        "p99_latency_ms": r.p99_latency_ms,
        "recovery_s": r.recovery_s,
        "passed": r.passed,
    }


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v) or "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |\n" for row in rows)


def write_report(r: CampaignResult) -> None:
    d = r.report_dir
    j = r.judgement
    plot = _plot(r, d / "rates.png")
    doc = {
        **summary(r),
        "description": r.scenario.description,
        "pass_rule": r.scenario.pass_rule.model_dump(),
        "failed_because": r.reasons,
        "duration_s": r.scenario.duration_s,
        "run_s": r.run_s,
        "drained": r.drained,
        "faults": [asdict(p) for p in r.faults],
        "pending": j.pending,
        "unaccounted": j.unaccounted,
        "mismatched": j.mismatched,
        "extra_rows": j.extra,
        "dropped_but_delivered": j.dropped_but_delivered,
        "incomplete_polls": j.incomplete_polls,
        "quality_bad_rows": j.quality_bad,
        "uncertain_rows": j.uncertain,
        "exception_rows": j.exception_rows,
        "exception_rows_expected": j.exception_rows_expected,
        "clock_descents": j.clock_descents,
        "per_device": j.per_device,
        "examples": j.examples,
        "latency_source": "gateway uplink histogram (publish -> PUBACK), all gateway processes",
        "samples": [{"t_s": t, "produced_per_s": p, "stored_per_s": s} for t, p, s in r.samples],
        "plot": plot,
        **r.extra,
    }
    (d / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [f"# HIL campaign: {r.scenario.name}\n"]
    if r.scenario.description:
        md.append(r.scenario.description.strip() + "\n\n")
    md.append(markdown_table([summary(r)]))
    md.append(f"\nRun {r.run_s:g} s, drained: {'yes' if r.drained else 'no'}; pending at the end {j.pending}; "
              f"unaccounted reads (answered while a gateway died) {j.unaccounted} points; "
              f"incomplete polls {j.incomplete_polls}; quality-bad rows (device down, refused reads) {j.quality_bad}, "
              f"of them Modbus exceptions {j.exception_rows} (expected {j.exception_rows_expected}); "
              f"uncertain rows {j.uncertain}; poll instants missed (gateways' count) "
              f"{r.extra.get('missed_polls', 0)}.\n")
    if r.faults:
        md.append("\n| fault | target | start s | end s | recovery s |\n|---|---|---|---|---|\n")
        for p, rec in sorted(zip(r.faults, r.recovery_s, strict=True), key=lambda pr: pr[0].start_s):
            md.append(f"| {p.kind} | {p.target} | {p.start_s:g} | {p.end_s:g} | {_cell(rec)} |\n")
    md.append("\n" + ("**Passed.**" if r.passed else "**Failed:** " + "; ".join(r.reasons)) + "\n")
    if j.examples:
        md.append("\nFirst disagreements:\n" + "".join(f"- {e}\n" for e in j.examples))
    md.append(f"\n![points per second]({plot})\n" if plot else "\n(no plot: install the `hil` extra)\n")
    (d / "report.md").write_text("".join(md))


def _plot(r: CampaignResult, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ts = [t for t, _p, _s in r.samples]
    produced: list[float] = [float("nan") if p is None else p for _t, p, _s in r.samples]
    ax.plot(ts, produced, label="produced (PLC reads)", color="tab:blue")
    stored: list[float] = [float("nan") if s is None else s for _t, _p, s in r.samples]
    ax.plot(ts, stored, label="stored (InfluxDB rows)",
            color="tab:green", marker=".", markersize=3)
    labelled: set[str] = set()
    for i, p in enumerate(r.faults):
        ax.axvspan(p.start_s, p.end_s, color=f"C{3 + sorted({q.kind for q in r.faults}).index(p.kind)}",
                   alpha=0.2, label=None if p.kind in labelled else p.kind)
        labelled.add(p.kind)
        del i
    ax.axvline(r.run_s, color="grey", linestyle="--", linewidth=1, label="end of run, drain")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("points / s")
    ax.set_title(f"{r.scenario.name}: {'passed' if r.passed else 'FAILED'}")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name
