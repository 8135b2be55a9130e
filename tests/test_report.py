"""The run report and the evaluation page: the sample log's rows, its resumability and
thumbnails, the curves' panels, and the HTML (right samples, escaping, no network)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from rethinker import metric_names as M
from rethinker.algo.sample import Judgement, RethinkAttempt, Sample
from rethinker.cli import main
from rethinker.records import ImageRef, Record
from rethinker.report import curves
from rethinker.report.eval_report import build_eval_report, order_predictions, prompt_question, save_items
from rethinker.report.html import esc, response_html
from rethinker.report.run_report import build_run_report, pick_steps
from rethinker.report.samples import SampleLog, read_samples, sample_rows
from rethinker.train.config import resolve, to_dict

EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def png(color=(255, 0, 0), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def record(i: int, img: bytes | None = None, **kw) -> Record:
    return Record(
        id=f"q{i}",
        question=kw.pop("question", f"How many {i}?"),
        answer=str(i),
        images=[ImageRef(bytes=img or png())],
        **kw,
    )


def group(g: int, G: int, rewards, *, texts=None, meta=None) -> list[Sample]:
    out = []
    for k, r in enumerate(rewards):
        m = {
            "text": (texts or {}).get(k, f"answer {k} \\boxed{{{g}}}"),
            "finished": True,
            "rule": "correct" if r > 0 else "wrong",
            "reason": "match" if r > 0 else "mismatch",
            "extracted": str(g),
        }
        m.update((meta or {}).get(k, {}))
        attempt = m.get("rethink_attempt")
        out.append(
            Sample(
                advantage=r - 0.5,
                reward=float(r),
                group=g,
                step=1,
                completion_ids=[1] * (5 + k),
                correct=r > 0,
                judgement=Judgement(**{f: m[f] for f in ("text", "finished", "rule", "reason", "extracted")}),
                rethink=RethinkAttempt(**attempt) if attempt else None,
            )
        )
    return out


def kept_meta(first: str, trigger: str, cont: str, cut=False, original=None) -> dict:
    return {
        "text": first + trigger + cont,
        "rethink": True,
        "rethink_attempt": {
            "original": original or first,
            "first": first,
            "cut": cut,
            "trigger": trigger,
            "continuation": cont,
            "kept": True,
            "why": "kept",
            "first_correct": False,
            "joined_correct": True,
        },
    }


def rejected_meta(text: str, trigger: str, cont: str, why="incorrect") -> dict:
    return {
        "rethink_attempt": {
            "original": text,
            "first": text,
            "cut": False,
            "trigger": trigger,
            "continuation": cont,
            "kept": False,
            "why": why,
            "first_correct": True,
            "joined_correct": False,
        }
    }


# -- sample rows ------------------------------------------------------------------------


def test_sample_rows_hold_the_first_queries_with_rewards_verdicts_rethinking_and_ssr_draws():
    recs = [record(0, choices=["a", "b"]), record(1), record(2)]
    samples = (
        group(
            0,
            4,
            [1, 0, 0, 1],
            meta={
                1: kept_meta("I see 3.", "\n\nWait", " no, 0. \\boxed{0}"),
                2: rejected_meta("answer 2", "\n\nWait, let's double check", " ok"),
            },
        )
        + group(1, 4, [0, 0, 0, 0])
        + group(2, 4, [1, 1, 1, 1])
    )
    indices = [0, 0, 3, 1, -1, 5]  # positions drawn by SSR (-1: a replay from an earlier step)
    rows = sample_rows(7, recs, samples, indices, n_queries=2, images=lambda r: ["img.png"])
    assert [r["id"] for r in rows] == ["q0", "q1"]  # the first two queries only
    r0 = rows[0]
    assert (r0["step"], r0["query"], r0["answer"], r0["choices"], r0["images"]) == (7, 0, "0", ["a", "b"], ["img.png"])
    assert len(r0["responses"]) == 4
    assert [x["ssr_draws"] for x in r0["responses"]] == [2, 1, 0, 1]
    assert [x["ssr_draws"] for x in rows[1]["responses"]] == [0, 1, 0, 0]
    assert [x["reward"] for x in r0["responses"]] == [1.0, 0.0, 0.0, 1.0]
    assert r0["responses"][0]["advantage"] == 0.5 and r0["responses"][0]["reason"] == "match"
    kept = r0["responses"][1]["rethink"]
    assert (kept["kept"], kept["why"], kept["trigger"], kept["continuation"]) == (
        True,
        "kept",
        "\n\nWait",
        " no, 0. \\boxed{0}",
    )
    assert r0["responses"][1]["text"] == "I see 3.\n\nWait no, 0. \\boxed{0}"
    rej = r0["responses"][2]["rethink"]
    assert (rej["kept"], rej["why"]) == (False, "incorrect") and "first" not in rej  # not cut: first == text
    assert "rethink" not in r0["responses"][0]
    assert r0["responses"][3]["tokens"] == 8


def test_sample_log_resumes_like_metrics_and_stores_each_image_once(tmp_path):
    red, blue = png((255, 0, 0), (300, 150)), png((0, 0, 255))
    recs = [record(0, red), record(1, blue)]
    log = SampleLog(tmp_path, 2)
    for step in (1, 2, 3):
        log.log_step(step, recs, group(0, 2, [1, 0]) + group(1, 2, [0, 0]), [0, 0])
    log.close()
    thumbs = sorted((tmp_path / "samples").glob("*.png"))
    assert len(thumbs) == 2  # two distinct images, three steps
    sizes = sorted(Image.open(p).size for p in thumbs)
    assert max(max(s) for s in sizes) <= 192 and (192, 96) in sizes  # scaled down, aspect kept
    rows = read_samples(tmp_path)
    assert [(r["step"], r["query"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert rows[0]["images"] == rows[2]["images"] != rows[1]["images"]
    # a run killed after its step-2 checkpoint, with a torn line, resumes from step 2
    with open(tmp_path / "samples.jsonl", "a") as fh:
        fh.write('{"step": 4, "que')
    log = SampleLog(tmp_path, 2, resume_step=2)
    log.log_step(3, recs, group(0, 2, [1, 1]) + group(1, 2, [0, 1]), [])
    log.close()
    rows = read_samples(tmp_path)
    assert [r["step"] for r in rows] == [1, 1, 2, 2, 3, 3]
    assert [x["reward"] for x in rows[-2]["responses"]] == [1.0, 1.0]


def test_unreadable_image_is_logged_as_none(tmp_path):
    rec = Record(id="bad", question="q?", answer="1", images=[ImageRef(bytes=b"not a png")])
    log = SampleLog(tmp_path, 1)
    rows = log.log_step(1, [rec], group(0, 2, [1, 0]), [])
    log.close()
    assert rows[0]["images"] == [None]


def test_a_failing_sink_does_not_stop_the_sample_log(tmp_path, capsys):
    class Broken:
        def log(self, *a, **k):
            raise RuntimeError("network down")

        def add_text(self, *a, **k):
            raise RuntimeError("disk full")

    log = SampleLog(tmp_path, 1, sinks=[("wandb", Broken()), ("tensorboard", Broken())])
    rows = log.log_step(1, [record(0)], group(0, 2, [1, 0]), [])
    log.close()
    assert len(rows) == 1 and len(read_samples(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "could not send the sample table to wandb" in err and "disk full" in err


# -- curves -------------------------------------------------------------------------------


def test_smoothing_is_debiased_and_keeps_gaps():
    assert curves.smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    out = curves.smooth([0.0, None, 1.0], 0.5)
    assert out[1] is None and out[0] == 0.0 and 0.0 < out[2] < 1.0
    assert curves.smoothing_weight(5) == 0.0 and curves.smoothing_weight(300) == pytest.approx(0.9)


def _keys(cfg, rows):
    return [p.key for p in curves.panels_for(cfg, rows)]


def _fake_rows(n=20, **extra):
    rows = [{"step": 0, "eval/accuracy": 0.5, "eval/ci_low": 0.4, "eval/ci_high": 0.6, "eval/n": 100}]
    for s in range(1, n + 1):
        rows.append(
            {
                "step": s,
                M.REWARD_MEAN: 0.1 * (s % 5),
                "accuracy": 0.5,
                M.ALL_CORRECT: 0.2,
                M.ALL_WRONG: 0.3,
                "reflection_rate": 0.1,
                M.RETHINK_ATTEMPTS: 10,
                M.RETHINK_ACCEPTED: 3,
                M.LENGTH_MEAN: 20.0,
                M.LENGTH_MAX: 40,
                "entropy": 0.3,
                M.CLIP_FRAC_LOW: 0.0,
                M.CLIP_FRAC_HIGH: 0.0,
                M.TIME_ROLLOUT: 1.0,
                M.TIME_UPDATE: 0.5,
                M.TIME_STEP: 2.0,
                M.UPDATE_SKIPPED: 0,
                **extra,
            }
        )
    rows.append({"step": n, "eval/accuracy": 0.6, "eval/ci_low": 0.5, "eval/ci_high": 0.7, "eval/n": 100})
    return rows


def test_panels_that_cannot_move_are_left_out():
    toy = to_dict(resolve(None, {}))
    rows = _fake_rows()
    keys = _keys(toy, rows)
    assert keys == ["eval", "reward", "groups", "reflection", "length", "entropy", "time"]  # no rethinking
    on = _keys(to_dict(resolve(None, {"rethink": "on"})), rows)
    assert on == ["eval", "reward", "groups", "reflection", "rethink", "length", "entropy", "time"]
    # the toy run: one on-policy update per batch (ratio == 1), no KL term
    assert "clip" not in keys and "kl" not in keys
    more = to_dict(resolve(None, {"optim.mini_batch_size": "16", "algo.kl_coef": "0.01", "rethink": "off"}))
    rows_kl = [dict(r, **{M.LOSS_KL: 0.01}) if M.REWARD_MEAN in r else r for r in rows]
    keys = _keys(more, rows_kl)
    assert "clip" in keys and "kl" in keys and "rethink" not in keys
    assert "clip" in _keys(to_dict(resolve(None, {"ssr": "released"})), rows)
    assert _keys(toy, []) == []  # nothing logged yet


def test_figure_is_a_png_and_curves_png_uses_it(tmp_path):
    cfg = to_dict(resolve(None, {}))
    data = curves.figure_png(cfg, _fake_rows())
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _fake_rows()))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


# -- run page -------------------------------------------------------------------------------


def _run_dir(tmp_path: Path, steps=(1, 2, 3), torn=False, rethink=True, ssr="paper", drawn=(1, 1, 0)) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = to_dict(resolve(None, {"max_steps": "10", "ssr.mode": ssr}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [r for r in _fake_rows(max(steps)) if r["step"] <= max(steps)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + ('{"step": 9, "rew' if torn else ""))
    log = SampleLog(tmp_path, 1)
    for s in steps:
        texts = {0: EVIL} if s == 2 else {}
        meta = (
            {1: kept_meta("I count 3.", "\n\nWait, there might be a mistake", " It is 4. \\boxed{4}")}
            if rethink
            else None
        )
        log.log_step(
            s,
            [record(s, question=f"question of step {s} <b>?</b>")],
            group(0, 3, [1, 1, 0], texts=texts, meta=meta),
            list(drawn),  # positions the update drew, with repeats
        )
    log.close()
    if torn:
        with open(tmp_path / "samples.jsonl", "a") as fh:
            fh.write('{"step": 9, "query": 0, "resp')
    return tmp_path


def test_run_page_shows_the_logged_samples_escaped_and_self_contained(tmp_path):
    d = _run_dir(tmp_path)
    out = build_run_report(d)
    page = out.read_text()
    assert out == d / "report.html"
    # model text is text: the script never reaches the page as markup
    assert "<script>alert" not in page and "<img src=x" not in page
    assert esc(EVIL) in page
    assert "question of step 2 &lt;b&gt;?&lt;/b&gt;" in page
    # all three steps, newest first, each with its 3 responses, and the step filter
    items = re.findall(r'<div class="item" data-step="(\d+)"', page)
    assert items == ["3", "2", "1"]
    assert page.count('class="resp ') == 9
    for s in ("1", "2", "3"):
        assert f'<option value="{s}"' in page
    # trigger and kept continuation highlighted; tags for the filters; SSR draws
    assert '<mark class="trig" title="Forced Rethinking trigger">\n\nWait, there might be a mistake</mark>' in page
    assert '<span class="cont kept" title="kept continuation"> It is 4. \\boxed{4}</span>' in page
    assert 'data-tags="correct rethought kept drawn"' in page
    assert 'data-tags="wrong notdrawn"' in page and "SSR x2" in page
    # summary: base and latest held-out accuracy with their intervals; curves inline
    assert "0.500 [0.400, 0.600] on 100 (step 0)" in page and "0.600 [0.500, 0.700]" in page
    assert 'src="data:image/png;base64,' in page
    # nothing fetched from anywhere
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "@import" not in page and "url(http" not in page


def test_run_page_offers_rethinking_filters_only_when_the_log_holds_an_attempt(tmp_path):
    on = build_run_report(_run_dir(tmp_path / "on")).read_text()
    off = build_run_report(_run_dir(tmp_path / "off", rethink=False)).read_text()
    for marker in ('value="rethought"', 'value="kept"', "Forced Rethinking trigger</span>"):
        assert marker in on and marker not in off
    for page in (on, off):  # the rest of the controls and legend stay
        assert 'value="wrong"' in page and 'value="drawn"' in page and "SSR xN</span> times" in page


def test_run_page_names_update_entries_plainly_when_ssr_was_off(tmp_path):
    """With SSR off every response enters the update once: the page says so and never
    credits SSR with draws it did not make."""
    page = build_run_report(_run_dir(tmp_path, ssr="off", drawn=(0, 1, 2))).read_text()
    assert "SSR x" not in page and "SSR drew" not in page and "drawn by SSR" not in page
    assert page.count("update x1</span>") == 9 and "3 response(s) in the update" in page
    assert (
        'value="drawn"' in page and "> in the update</label>" in page and "update xN</span> times the response" in page
    )
    assert "SSR off; rethinking off" in page  # the summary names the mode (no alpha: nothing is drawn)


def test_run_page_of_a_live_run_reads_what_is_there(tmp_path):
    d = _run_dir(tmp_path, steps=(1, 2), torn=True)
    page = build_run_report(d).read_text()
    assert "in progress or stopped: step 2 of 10" in page
    assert re.findall(r'<div class="item" data-step="(\d+)"', page) == ["2", "1"]


def test_run_page_spreads_a_long_log_over_the_shown_steps(tmp_path):
    assert pick_steps(range(1, 301), 5) == [1, 76, 151, 225, 300]
    assert pick_steps([3, 1, 2], 0) == [1, 2, 3]
    d = _run_dir(tmp_path, steps=tuple(range(1, 8)))
    page = build_run_report(d, max_steps=3).read_text()
    assert re.findall(r'<div class="item" data-step="(\d+)"', page) == ["7", "4", "1"]
    assert "7 steps logged; the 3 shown" in page


def test_response_html_highlights_cut_and_rejected_attempts():
    cut = response_html(
        "I count 3.\n\nWait 4. \\boxed{4}",
        {
            "kept": True,
            "trigger": "\n\nWait",
            "continuation": " 4. \\boxed{4}",
            "cut": True,
            "first": "I count 3.",
            "original": "I count 3. \\boxed{3}",
        },
    )
    assert "original response" in cut and "I count 3. \\boxed{3}" in cut
    rej = response_html("answer <3", {"kept": False, "why": "length", "trigger": "\n\nWait", "continuation": "<x>"})
    assert "rejected: length" in rej and '<span class="cont rejected">&lt;x&gt;</span>' in rej
    assert "answer &lt;3" in rej


# -- evaluation page ------------------------------------------------------------------------


def _preds():
    base = {
        "benchmark": "bench",
        "finished": True,
        "prompt": "<|im_start|>user\nWhat? <b><|im_end|>\n<|im_start|>assistant\n",
    }
    return [
        {
            **base,
            "id": "a",
            "category": "geo",
            "correct": True,
            "response": "fine \\boxed{A}",
            "extracted": "A",
            "answer": "A",
            "reason": "match",
        },
        {
            **base,
            "id": "b",
            "category": "geo",
            "correct": False,
            "response": EVIL,
            "extracted": "B",
            "answer": "A",
            "reason": "mismatch",
        },
        {
            **base,
            "id": "c",
            "category": "alg",
            "correct": True,
            "response": "ok",
            "extracted": "2",
            "answer": "2",
            "reason": "match",
            "n_samples": 2,
            "n_correct": 1,
            "samples": [
                {"response": "ok", "extracted": "2", "correct": True, "reason": "match", "finished": True},
                {"response": "no <3", "extracted": "3", "correct": False, "reason": "mismatch", "finished": True},
            ],
        },
    ]


def test_eval_page_orders_wrong_first_per_category_and_escapes(tmp_path):
    from rethinker.report.summary import summarize, write_reports

    preds = _preds()
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    write_reports(tmp_path, {"bench": summarize(preds, benchmark="bench")})
    recs = [
        Record(
            id="a",
            question="Which <shape>?",
            answer="A",
            choices=["circle", "square & co"],
            images=[ImageRef(bytes=png())],
        ),
        Record(
            id="b",
            question="Which <shape>?",
            answer="A",
            choices=["circle", "square & co"],
            images=[ImageRef(bytes=png())],
        ),
    ]
    assert save_items(tmp_path, "bench", recs) == 2
    assert save_items(tmp_path, "bench", recs) == 0  # stored once
    assert len(list((tmp_path / "thumbs").glob("*.png"))) == 1  # the same image
    page = build_eval_report(tmp_path).read_text()
    assert [p["id"] for p in order_predictions(preds)] == ["c", "b", "a"]  # alg, then geo wrong first
    ids = re.findall(r"bench · \w+ · (\w)</div>", page)
    assert ids == ["c", "b", "a"]
    assert "<script>alert" not in page and esc(EVIL) in page
    assert "Which &lt;shape&gt;?" in page and "B. square &amp; co" in page
    assert "What? &lt;b&gt;" in page  # no items.jsonl entry for c: the prompt's user text
    assert 'data-group="bench / geo"' in page and 'data-tags="wrong"' in page
    assert "1/2 samples correct" in page and "1 more sample(s)" in page and "no &lt;3" in page
    assert "0.500" in page  # overall accuracy from summary.json (item c counts 1/2)
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)


def test_prompt_question_strips_the_chat_template():
    p = (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many?\nPlease reason<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prompt_question(p) == "How many?\nPlease reason"


def test_report_command_picks_the_page_by_folder(tmp_path, capsys):
    run = _run_dir(tmp_path / "run")
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in _preds()))
    assert main(["report", str(run)]) == 0
    assert main(["report", str(ev), "--output", str(tmp_path / "e.html")]) == 0
    assert "rethinker run:" in (run / "report.html").read_text()
    assert "rethinker eval:" in (tmp_path / "e.html").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a training run directory" in capsys.readouterr().err


def test_photos_are_thumbnailed_as_jpeg_and_drawings_as_png(tmp_path):
    import numpy as np

    from rethinker.report.html import ImageSheet
    from rethinker.report.images import ThumbnailStore

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    store = ThumbnailStore(tmp_path)
    photo = store.add(ImageRef(bytes=buf.getvalue()))
    drawing = store.add(ImageRef(bytes=png()))
    assert photo.endswith(".jpg") and drawing.endswith(".png")
    assert store.add(ImageRef(bytes=buf.getvalue())) == photo  # stored once
    sheet = ImageSheet()
    tag = sheet.tag(photo, (tmp_path / photo).read_bytes())
    assert "width:192px;height:128px" in tag and "data:image/jpeg;base64," in sheet.css()
    assert store.add(ImageRef(path="missing.png"), tmp_path) is None


def test_run_page_summary_holds_the_test_split_first_and_last(tmp_path):
    d = _run_dir(tmp_path)
    with open(d / "metrics.jsonl", "a") as fh:
        for step, acc in ((0, 0.55), (3, 0.68)):
            fh.write(
                json.dumps(
                    {
                        "step": step,
                        "test/accuracy": acc,
                        "test/ci_low": acc - 0.02,
                        "test/ci_high": acc + 0.02,
                        "test/n": 2000,
                        "time/test_s": 30.0,
                    }
                )
                + "\n"
            )
    page = build_run_report(d).read_text()
    assert "<td>test accuracy, base</td><td>0.550 [0.530, 0.570] on 2000 (step 0)</td>" in page
    assert "0.680 [0.660, 0.700] on 2000 (step 3)" in page and "+0.130" in page
    assert "held-out (dev) accuracy, base" in page
