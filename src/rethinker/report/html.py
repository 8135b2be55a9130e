"""Building blocks of the report pages: escaping, images, a response with its Forced
Rethinking highlighted, the filter bar, and the page shell (CSS and a little script).

Pages are self-contained: no network, no server. Images are embedded once each as a
data URI in a CSS class (a thumbnail shown at several steps is stored once). Every piece
of model or data text goes through ``esc`` (``html.escape``): a response full of
``<script>`` renders as text.
"""

from __future__ import annotations

import base64
import html
import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def esc(value: Any) -> str:
    """Text -> HTML text (``& < > " '`` escaped); None -> ''."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return esc(x)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG or JPEG bytes (header only), None if unreadable."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


def mime_of(data: bytes) -> str:
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


class ImageSheet:
    """Images embedded once each: ``tag(key, png)`` gives an element showing it, ``css()``
    the style sheet that holds the data (one class per distinct image)."""

    def __init__(self, min_side: int = 112, max_side: int = 192):
        self.classes: dict[str, str] = {}
        self._css: list[str] = []
        self.min_side = min_side
        self.max_side = max_side

    def tag(self, key: str, data: bytes | None, alt: str = "") -> str:
        if not data:
            return '<div class="noimg">no image</div>'
        cls = self.classes.get(key)
        if cls is None:
            cls = f"im{len(self.classes)}"
            self.classes[key] = cls
            self._css.append(f".{cls}{{background-image:url({data_uri(data, mime_of(data))})}}")
        w, h = image_size(data) or (self.max_side, self.max_side)
        long = max(w, h, 1)
        scale = min(self.max_side / long, max(1.0, self.min_side / long))
        return (
            f'<div class="thumb {cls}" role="img" aria-label="{esc(alt)}" '
            f'style="width:{round(w * scale)}px;height:{round(h * scale)}px"></div>'
        )

    def thumbs(self, folder, names, alt: str = "") -> list[str]:
        """Elements for the thumbnails ``names`` stored in ``folder`` (a name with a path
        separator, or a missing file, shows as "no image")."""
        out = []
        for name in names or []:
            data = None
            if name and "/" not in name and "\\" not in name:
                try:
                    data = (folder / name).read_bytes()
                except OSError:
                    data = None
            out.append(self.tag(str(name), data, alt=alt))
        return out

    def css(self) -> str:
        return "\n".join(self._css)


def response_html(text: str, rethink: Mapping[str, Any] | None) -> str:
    """A response as a <pre>: for a kept Forced Rethinking continuation, the trigger is
    marked and the continuation highlighted; a rejected attempt is shown under it, folded."""
    text = "" if text is None else str(text)
    if not rethink:
        return f'<pre class="text">{esc(text)}</pre>'
    trig = str(rethink.get("trigger") or "")
    cont = str(rethink.get("continuation") or "")
    parts = []
    if rethink.get("kept"):
        tail = trig + cont
        if tail and text.endswith(tail):
            head = text[: len(text) - len(tail)]
            parts.append(
                f'<pre class="text">{esc(head)}<mark class="trig" title="Forced Rethinking trigger">'
                f'{esc(trig)}</mark><span class="cont kept" title="kept continuation">{esc(cont)}</span>'
                "</pre>"
            )
        else:  # cut by the log's length cap: no highlighting
            parts.append(f'<pre class="text">{esc(text)}</pre>')
        if rethink.get("original") is not None:
            parts.append(
                '<details class="orig"><summary>original response (cut back before its answer, then '
                f'continued)</summary><pre class="text faint">{esc(rethink["original"])}</pre></details>'
            )
        return "".join(parts)
    first = rethink.get("first")
    first = text if first is None else str(first)
    parts.append(f'<pre class="text">{esc(text)}</pre>')
    parts.append(
        f'<details class="attempt"><summary>Forced Rethinking tried, rejected: {esc(rethink.get("why"))}'
        f"{' (first pass cut before its answer)' if rethink.get('cut') else ''}</summary>"
        f'<pre class="text faint">{esc(first)}<mark class="trig">{esc(trig)}</mark>'
        f'<span class="cont rejected">{esc(cont)}</span></pre></details>'
    )
    return "".join(parts)


def select(id_: str, label: str, options: Sequence[tuple[str, str]], selected: str = "") -> str:
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == selected else ""}>{esc(t)}</option>' for v, t in options
    )
    return f'<label>{esc(label)} <select id="{esc(id_)}" onchange="applyFilters()">{opts}</select></label>'


def radios(name: str, options: Sequence[tuple[str, str]], checked: str = "all") -> str:
    return " ".join(
        f'<label class="radio"><input type="radio" name="{esc(name)}" value="{esc(v)}"'
        f'{" checked" if v == checked else ""} onchange="applyFilters()"> {esc(t)}</label>'
        for v, t in options
    )


def table(head: Sequence[str] | None, rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """A table (no header row when ``head`` is None); cells are escaped unless given as ``Raw``."""
    out = [f'<table class="{esc(cls)}">']
    if head:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else esc(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class Raw(str):
    """HTML that is already safe (built here from escaped parts)."""


CSS = """
:root{--ok:#2e7d32;--bad:#c62828;--mix:#f9a825;--line:#ddd;--muted:#666}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px} header .sub{color:#b0bec5;font-size:13px}
main{padding:12px 24px;max-width:1500px}
h2{font-size:17px;border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:26px}
table{border-collapse:collapse;margin:6px 0;background:#fff}
td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#eceff1}
.kv td:first-child{color:var(--muted)}
.note{color:var(--muted);font-size:12px}
.warn{color:#8a6d00;background:#fff8e1;padding:4px 8px;border:1px solid #ffe082;display:inline-block}
.curves img{max-width:100%;border:1px solid var(--line);background:#fff}
.filters{position:sticky;top:0;background:#eceff1;padding:8px 10px;border:1px solid var(--line);z-index:5;
  display:flex;flex-wrap:wrap;gap:14px;align-items:center}
.filters .radio{margin-right:4px} #f-count{color:var(--muted);margin-left:auto}
.item{background:#fff;border:1px solid var(--line);border-radius:6px;margin:12px 0;padding:10px 12px}
.item[hidden],.resp[hidden],.grouphead[hidden]{display:none}
.grouphead{margin:18px 0 4px 0;font-weight:600;font-size:15px}
.qhead{display:flex;gap:14px;align-items:flex-start}
.thumb{background-size:contain;background-repeat:no-repeat;image-rendering:pixelated;border:1px solid var(--line);
  flex:none}
.noimg{width:112px;height:40px;border:1px dashed #bbb;color:#999;font-size:12px;display:flex;align-items:center;
  justify-content:center;flex:none}
.question{white-space:pre-wrap;font-weight:600}
.meta{color:var(--muted);font-size:12px}
.gold{color:var(--ok);font-weight:600}
.badge{display:inline-block;border-radius:3px;padding:0 6px;font-size:12px;color:#fff;margin-right:4px}
.b-ok{background:var(--ok)} .b-bad{background:var(--bad)} .b-mix{background:var(--mix);color:#222}
.b-re{background:#6a1b9a} .b-rej{background:#9e9e9e} .b-ssr{background:#1565c0}
.resp{border-top:1px solid #eee;padding:6px 0 4px 0}
.resp.ok{border-left:4px solid var(--ok);padding-left:8px} .resp.bad{border-left:4px solid var(--bad);padding-left:8px}
.rmeta{font-size:12px;color:#444}
pre.text{white-space:pre-wrap;word-break:break-word;margin:4px 0;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;
  background:#f6f8fa;padding:6px 8px;border-radius:4px}
pre.faint{color:#777}
mark.trig{background:#ffe082;color:#222;border-radius:2px;padding:0 1px}
.cont.kept{background:#e1f5fe;border-bottom:2px solid #0288d1}
.cont.rejected{background:#fbe9e7;text-decoration:line-through;text-decoration-color:#e57373}
details summary{cursor:pointer;color:#555;font-size:12px}
.legend span{margin-right:10px}
"""

SCRIPT = """
function applyFilters(){
  var g=function(id){var e=document.getElementById(id);return e?e.value:'';};
  var step=g('f-step'), group=g('f-group');
  var r=document.querySelector('input[name=f-show]:checked'); var show=r?r.value:'all';
  var nItems=0,nResp=0;
  document.querySelectorAll('.item').forEach(function(it){
    var ok=(!step||it.dataset.step===step)&&(!group||it.dataset.group===group||it.dataset.bench===group);
    var any=false;
    it.querySelectorAll('.resp').forEach(function(x){
      var vis=ok&&(show==='all'||(' '+x.dataset.tags+' ').indexOf(' '+show+' ')>=0);
      x.hidden=!vis; if(vis){any=true;nResp++;}
    });
    it.hidden=!any; if(any)nItems++;
  });
  document.querySelectorAll('.grouphead').forEach(function(h){
    h.hidden=!((!group||h.dataset.group===group||h.dataset.bench===group)&&(!step||h.dataset.step===step));
  });
  var c=document.getElementById('f-count'); if(c)c.textContent=nItems+' shown ('+nResp+' responses)';
}
function filtersFromHash(){
  // e.g. report.html#step=12&show=wrong or #group=mathvista&show=wrong
  new URLSearchParams(location.hash.slice(1)).forEach(function(v,k){
    var sel=document.getElementById('f-'+k);
    if(sel){sel.value=v;}
    var r=document.querySelector('input[name=f-'+k+'][value="'+v.replace(/"/g,'')+'"]'); if(r)r.checked=true;
  });
}
document.addEventListener('DOMContentLoaded',function(){filtersFromHash();applyFilters();});
window.addEventListener('hashchange',function(){filtersFromHash();applyFilters();});
"""


def page(title: str, subtitle: str, body: str, extra_css: str = "") -> str:
    """The whole document: no external resource of any kind."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}\n{extra_css}</style>"
        f"<script>{SCRIPT}</script></head><body><header><h1>{esc(title)}</h1>"
        f'<div class="sub">{esc(subtitle)}</div></header><main>{body}</main></body></html>\n'
    )
