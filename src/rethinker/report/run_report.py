"""``RUN_DIR/report.html``: a training run on one self-contained page.

Reads what the run directory holds (``config.yaml``, ``metrics.jsonl``,
``samples.jsonl`` and its thumbnails), so it can be rebuilt while the run is going: a
torn last line is skipped and the page says how far the run is. Sections: summary (base
and final held-out (dev) accuracy with 95% intervals, Δ, the test set's first and last
accuracy when the run has one, steps, time), the curves
(``curves.figure_png``), a browser of the logged samples (filter by step and by
correct / wrong / rethought / kept / drawn by SSR), and the full config.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import metric_names as M
from ..files import read_jsonl, write_atomic
from .curves import eval_rows, figure_png, panels_for, step_rows
from .html import ImageSheet, data_uri, esc, fmt, page, radios, response_html, select, table
from .samples import THUMBS_DIR, read_samples

REPORT_FILE = "report.html"
#: Logged steps shown in the browser by default (evenly spread, the last one always in).
DEFAULT_MAX_STEPS = 60


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Whole JSON lines of a file that may be growing ([] when absent)."""
    return [row for row in read_jsonl(path, missing_ok=True, errors="replace") if isinstance(row, dict)]


def read_config(run_dir: Path) -> tuple[dict[str, Any], str]:
    import yaml

    path = run_dir / "config.yaml"
    if not path.exists():
        return {}, ""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        cfg = None
    return (cfg if isinstance(cfg, dict) else {}), text


def pick_steps(steps: Sequence[int], max_steps: int) -> list[int]:
    """At most ``max_steps`` of ``steps`` (sorted), evenly spread, first and last included
    (0: all of them)."""
    steps = sorted(set(steps))
    if max_steps <= 0 or len(steps) <= max_steps:
        return steps
    if max_steps == 1:
        return [steps[-1]]
    idx = {round(i * (len(steps) - 1) / (max_steps - 1)) for i in range(max_steps)}
    return [steps[i] for i in sorted(idx)]


def _split_keys(split: str) -> dict[str, str]:
    names = {"accuracy": M.SPLIT_ACCURACY, "ci_low": M.SPLIT_CI_LOW, "time": M.TIME_SPLIT}
    return {k: M.key(v, split=split) for k, v in names.items()}


_EVAL, _TEST = _split_keys("eval"), _split_keys("test")


def _ci(row: Mapping[str, Any] | None, split: str = "eval") -> str:
    if not row:
        return "-"
    acc, lo, hi, n = (
        row.get(M.key(m, split=split)) for m in (M.SPLIT_ACCURACY, M.SPLIT_CI_LOW, M.SPLIT_CI_HIGH, M.SPLIT_N)
    )
    return f"{acc:.3f} [{lo or 0:.3f}, {hi or 0:.3f}]" + (f" on {n}" if n else "") + f" (step {row[M.STEP]})"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def summary_html(cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    steps = step_rows(rows)
    evs = eval_rows(rows)
    done = max((int(r[M.STEP]) for r in steps), default=0)
    total = cfg.get("max_steps")
    base = evs[0] if evs and evs[0][M.STEP] == 0 else None
    final = evs[-1] if evs and evs[-1][M.STEP] > 0 else None
    t_train = sum(float(r.get(M.TIME_STEP) or 0) for r in steps)
    t_eval = sum(
        float(r.get(_EVAL["time"]) or r.get(_TEST["time"]) or 0)
        for r in rows
        if _EVAL["ci_low"] in r or _TEST["ci_low"] in r
    )
    rollout = cfg.get("rollout") or {}
    ssr = cfg.get("ssr") or {}
    rethink = cfg.get("rethink") or {}
    model = (cfg.get("model") or {}).get("path") or "built-in toy policy"
    data = (cfg.get("data") or {}).get("train") or "toy puzzles"
    kv: list[tuple[str, Any]] = [
        (
            "status",
            f"finished ({done} steps)"
            if total and done >= total
            else f"in progress or stopped: step {done}" + (f" of {total}" if total else ""),
        ),
        ("held-out (dev) accuracy, base", _ci(base)),
        (
            "held-out (dev) accuracy, latest" if not (total and done >= total) else "held-out (dev) accuracy, final",
            _ci(final),
        ),
    ]
    if base and final:
        kv.append(("change", f"{final[_EVAL['accuracy']] - base[_EVAL['accuracy']]:+.3f}"))
    tests = [r for r in rows if _TEST["ci_low"] in r]  # the test set: first and last step only
    if tests:
        kv.append(("test accuracy, base", _ci(tests[0], "test") if tests[0][M.STEP] == 0 else "-"))
        if tests[-1][M.STEP] > 0:
            kv.append(("test accuracy, final", _ci(tests[-1], "test")))
            if tests[0][M.STEP] == 0:
                kv.append(("test change", f"{tests[-1][_TEST['accuracy']] - tests[0][_TEST['accuracy']]:+.3f}"))
    kv += [
        ("time logged", f"{_duration(t_train + t_eval)} (steps {_duration(t_train)}, evaluation {_duration(t_eval)})"),
        ("model / data", f"{model} / {data}"),
        (
            "GRPO",
            f"{rollout.get('queries_per_step')} queries x G={rollout.get('group_size')} per step, "
            f"max {rollout.get('max_new_tokens')} new tokens",
        ),
        (
            "SSR / Forced Rethinking",
            f"SSR {ssr.get('mode')}"
            + ("" if ssr.get("mode") == "off" else f" (alpha {ssr.get('alpha')})")
            + f"; rethinking {'on' if rethink.get('enabled', True) else 'off'}",
        ),
        ("learning rate", f"{(cfg.get('optim') or {}).get('lr')} ({(cfg.get('optim') or {}).get('scheduler')})"),
        ("seed", cfg.get("seed")),
    ]
    return table(None, kv, "kv")


def curves_html(cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], png_out: Path | None = None) -> str:
    png = figure_png(cfg, rows, dpi=90)
    if png is not None and png_out is not None:
        png_out.write_bytes(png)
    if png is None:
        return '<p class="note">No step logged yet.</p>'
    shown = [p.title for p in panels_for(cfg, rows)]
    return (
        f'<div class="curves"><img alt="training curves: {esc(", ".join(shown))}" src="{data_uri(png)}"></div>'
        '<p class="note">Panels whose quantity cannot move in this configuration are left out (the clip '
        "fraction when each batch gets one on-policy update, the KL without a KL term, Forced Rethinking "
        "when it is off). The group shares are over the step's queries: only mixed groups carry a "
        "GRPO gradient.</p>"
    )


#: how the sample browser names a response's entries into the update: SSR's draws when SSR
#: ran, plain entries when it was off (then every response enters the update once)
DRAW_LABELS = {
    "ssr": {
        "badge": "SSR x{n}",
        "none": "not drawn",
        "group": "SSR drew this group {n} time(s)",
        "filter": "drawn by SSR",
        "key": "SSR xN",
        "legend": "times Selective Sample Replay drew the response into the update",
    },
    "plain": {
        "badge": "update x{n}",
        "none": "not in the update",
        "group": "{n} response(s) in the update",
        "filter": "in the update",
        "key": "update xN",
        "legend": "times the response entered the update (SSR off: each response once)",
    },
}


def draw_labels(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``DRAW_LABELS`` for a run's config (SSR's when the config does not say SSR was off)."""
    ssr = cfg.get("ssr")
    return DRAW_LABELS["plain" if isinstance(ssr, Mapping) and ssr.get("mode") == "off" else "ssr"]


def response_tags(resp: Mapping[str, Any]) -> list[str]:
    tags = ["correct" if resp.get("correct") else "wrong"]
    rt = resp.get("rethink")
    if rt:
        tags += ["rethought", "kept" if rt.get("kept") else "rejected"]
    tags.append("drawn" if (resp.get("ssr_draws") or 0) > 0 else "notdrawn")
    return tags


def _response(resp: Mapping[str, Any], k: int, labels: Mapping[str, str]) -> str:
    ok = bool(resp.get("correct"))
    rt = resp.get("rethink")
    badges = [f'<span class="badge {"b-ok" if ok else "b-bad"}">{"correct" if ok else "wrong"}</span>']
    if rt and rt.get("kept"):
        badges.append('<span class="badge b-re">rethought, kept</span>')
    elif rt:
        badges.append(f'<span class="badge b-rej">rethinking rejected: {esc(rt.get("why"))}</span>')
    draws = int(resp.get("ssr_draws") or 0)
    badges.append(
        f'<span class="badge b-ssr">{labels["badge"].format(n=draws)}</span>'
        if draws
        else f'<span class="badge b-rej">{labels["none"]}</span>'
    )
    meta = (
        f"#{k + 1} reward {fmt(resp.get('reward'), 2)} · advantage {fmt(resp.get('advantage'), 3)} · "
        f"verdict {esc(resp.get('reason'))} ({esc(resp.get('rule'))}) · extracted "
        f"<code>{esc(resp.get('extracted'))}</code> · {esc(resp.get('tokens'))} tokens"
        + ("" if resp.get("finished", True) else " · truncated")
        + (
            f" · text cut at {len(resp.get('text') or '')} of {resp['text_chars']} chars"
            if resp.get("text_chars")
            else ""
        )
    )
    return (
        f'<div class="resp {"ok" if ok else "bad"}" data-tags="{" ".join(response_tags(resp))}">'
        f'<div class="rmeta">{"".join(badges)} {meta}</div>{response_html(resp.get("text") or "", rt)}</div>'
    )


def _query(row: Mapping[str, Any], sheet: ImageSheet, thumbs: Path, labels: Mapping[str, str]) -> str:
    resps = row.get("responses") or []
    n_ok = sum(bool(r.get("correct")) for r in resps)
    kind = "all correct" if resps and n_ok == len(resps) else "all wrong" if n_ok == 0 else "mixed"
    badge = {"all correct": "b-ok", "all wrong": "b-bad", "mixed": "b-mix"}[kind]
    imgs = sheet.thumbs(thumbs, row.get("images"), alt=f"image of {row.get('id')}")
    choices = row.get("choices")
    opts = (
        "<div>" + "<br>".join(f"{chr(65 + i)}. {esc(c)}" for i, c in enumerate(choices)) + "</div>" if choices else ""
    )
    n_draws = sum(int(r.get("ssr_draws") or 0) for r in resps)
    values: dict[float, int] = {}
    for r in resps:
        v = r.get("reward")
        key = float(v) if isinstance(v, (int, float)) else float("nan")
        values[key] = values.get(key, 0) + 1
    rewards = ", ".join(f"{fmt(v, 2)} x{n}" for v, n in sorted(values.items(), reverse=True))
    where = " · ".join(
        esc(x)
        for x in (f"step {row.get('step')}", f"query {row.get('query')}", row.get("id"), row.get("category"))
        if x
    )
    head = (
        f'<div class="qhead">{"".join(imgs)}<div><div class="meta">{where}</div>'
        f'<div class="question">{esc(row.get("question"))}</div>{opts}'
        f'<div>gold: <span class="gold">{esc(row.get("answer"))}</span> · '
        f'<span class="badge {badge}">{kind}</span> {n_ok}/{len(resps)} correct · rewards {rewards} · '
        f"{labels['group'].format(n=n_draws)}</div></div></div>"
    )
    body = "".join(_response(r, k, labels) for k, r in enumerate(resps))
    return f'<div class="item" data-step="{esc(row.get("step"))}">{head}{body}</div>'


def browser_html(
    samples: Sequence[Mapping[str, Any]],
    thumbs: Path,
    sheet: ImageSheet,
    max_steps: int = DEFAULT_MAX_STEPS,
    labels: Mapping[str, str] = DRAW_LABELS["ssr"],
) -> str:
    if not samples:
        return (
            '<p class="note">No samples logged (the run predates the sample log, or ran with '
            "<code>--log-samples 0</code>).</p>"
        )
    by_step: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in samples:
        by_step[int(r["step"])].append(r)
    steps = pick_steps(list(by_step), max_steps)
    note = (
        f"{len(by_step)} steps logged; the {len(steps)} shown are spread evenly over them "
        "(<code>rethinker report --max-steps 0</code> shows all)."
        if len(steps) < len(by_step)
        else f"{len(by_step)} steps logged, all shown."
    )
    options = [("", "all shown steps")] + [(str(s), f"step {s}") for s in reversed(steps)]
    # Forced Rethinking's filters and legend only where the log holds an attempt (a run with
    # rethinking off would offer filters that always show nothing)
    rethought = any(resp.get("rethink") for row in samples for resp in row.get("responses") or [])
    shows = [("all", "all"), ("correct", "correct"), ("wrong", "wrong")]
    shows += [("rethought", "rethought"), ("kept", "kept continuation")] if rethought else []
    controls = (
        select("f-step", "step", options, selected=str(steps[-1]))
        + " show: "
        + radios("f-show", [*shows, ("drawn", labels["filter"])])
        + '<span id="f-count"></span>'
    )
    note += " A view can be linked: <code>report.html#step=12&amp;show=wrong</code>."
    legend = (
        '<p class="legend note">'
        + (
            '<span><mark class="trig">trigger</mark> Forced Rethinking trigger</span>'
            '<span><span class="cont kept">continuation</span> kept continuation</span>'
            '<span><span class="cont rejected">continuation</span> rejected continuation</span>'
            if rethought
            else ""
        )
        + f'<span><span class="badge b-ssr">{labels["key"]}</span> {labels["legend"]}</span></p>'
    )
    items = "".join(_query(r, sheet, thumbs, labels) for s in reversed(steps) for r in by_step[s])
    return f'<p class="note">{note}</p>{legend}<div class="filters">{controls}</div>{items}'


def build_run_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    curves_png: str | Path | None = None,
) -> Path:
    """Write the run's page (default ``RUN_DIR/report.html``, atomically) and return its
    path; ``curves_png``: also save the figure there (the trainer's ``curves.png``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl or config.yaml (not a training run directory)")
    cfg, cfg_text = read_config(run_dir)
    rows = read_rows(run_dir / "metrics.jsonl")
    samples = read_samples(run_dir)
    sheet = ImageSheet()
    browser = browser_html(samples, run_dir / THUMBS_DIR, sheet, max_steps, draw_labels(cfg))
    body = (
        f"<h2>Summary</h2>{summary_html(cfg, rows)}"
        f"<h2>Curves</h2>{curves_html(cfg, rows, Path(curves_png) if curves_png else None)}"
        f"<h2>Samples</h2>{browser}"
        f'<h2>Config</h2><details><summary>config.yaml</summary><pre class="text">{esc(cfg_text)}</pre>'
        "</details>"
    )
    subtitle = f"{run_dir.resolve()} · built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by rethinker report"
    doc = page(f"rethinker run: {run_dir.resolve().name}", subtitle, body, sheet.css())
    out = Path(out) if out else run_dir / REPORT_FILE
    write_atomic(out, doc)
    return out
