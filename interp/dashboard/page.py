"""The dashboard as one self-contained HTML file: an index (search, sort by density, label score,
max activation) and one view per latent, drawn by the page's own script from the records
embedded as JSON. plotly.js is embedded once (`interp.viz.html.plotly_script`); a Content
Security Policy forbids every network request, and every token is inserted as text
(`textContent`), never as markup, so a token such as `<img src=x onerror=alert(1)>` is shown."""

import json
from html import escape
from typing import Any

from interp.viz.html import plotly_script

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
#side{width:34%;min-width:320px;overflow:auto;border-right:1px solid #ccc;padding:8px}
#main{flex:1;overflow:auto;padding:12px 20px}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{padding:2px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
#index tr:hover{background:#f0f4ff;cursor:pointer}
.ex{font-family:monospace;white-space:pre-wrap;margin:2px 0;padding:2px;border-bottom:1px dotted #ddd}
.ex span{border-radius:2px}
.ex span.at{outline:1px solid #b2182b}
pre{background:#f6f6f6;padding:6px;white-space:pre-wrap}
.muted{color:#777;font-size:12px}
.link{color:#2166ac;cursor:pointer;text-decoration:underline}
.plots{display:flex;gap:8px}.plots>div{width:50%;height:220px}
.cols{display:flex;gap:16px}.cols>div{flex:1}
"""

SCRIPT = r"""
const D = JSON.parse(document.getElementById('dash-data').textContent);
const V = D.vocab;
const byIndex = new Map(D.features.map(r => [r.index, r]));
function el(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const shown = s => s.replace(/\n/g, '\u23ce');
const q = s => JSON.stringify(s);
function example(ex, vmax) {
  const d = el('div', 'ex');
  ex.tokens.forEach((t, i) => {
    const a = ex.acts[i];
    const s = el('span', i === ex.at ? 'at' : '', shown(V[t]));
    s.title = a + '';
    const alpha = vmax > 0 ? Math.max(0, Math.min(1, a / vmax)) : 0;
    s.style.background = 'rgba(33,102,172,' + alpha.toFixed(3) + ')';
    d.append(s);
  });
  return d;
}
function featLink(g, extra) {
  const s = el('span', 'link', '#' + g + (extra === undefined ? '' : ' (' + extra + ')'));
  s.onclick = () => { location.hash = 'f' + g; };
  return s;
}
function table(head, rows) {
  const t = el('table', '');
  t.append(el('tr', '', ...head.map(h => el('th', '', h))));
  for (const r of rows) t.append(el('tr', '', ...r.map(c => el('td', '', c))));
  return t;
}
function bars(div, x, y, title, logx) {
  if (!x.length) { div.append(el('p', 'muted', title + ': no data')); return; }
  Plotly.newPlot(div, [{type: 'bar', x: x, y: y, marker: {color: '#2166ac'}}],
    {title: {text: title, font: {size: 13}}, margin: {l: 40, r: 10, t: 30, b: 30},
     xaxis: {type: logx ? 'log' : 'linear'}, bargap: 0.05},
    {displaylogo: false, displayModeBar: false, responsive: true});
}
function centres(edges, logx) {
  const c = [];
  for (let i = 0; i + 1 < edges.length; i++)
    c.push(logx && edges[i] > 0 ? Math.sqrt(edges[i] * edges[i + 1]) : (edges[i] + edges[i + 1]) / 2);
  return c;
}
function labelText(r) { return r.label ? r.label.text : '(no label: never fired)'; }
function show(f) {
  const r = byIndex.get(f), m = document.getElementById('main');
  m.replaceChildren();
  if (!r) { m.append(el('p', '', 'feature ' + f + ' is not in this dashboard')); return; }
  m.append(el('h2', '', 'Feature ' + r.index));
  m.append(el('p', '', el('b', '', labelText(r))));
  if (r.label) {
    const L = r.label;
    m.append(el('p', 'muted', 'label score (held-out F1) ' + L.score + ' = precision ' +
      L.precision + ', recall ' + L.recall + '; next token most often ' +
      (L.next_token === null ? '-' : q(V[L.next_token])) + '; top logit ' +
      (r.logits.top.length ? q(V[r.logits.top[0][0]]) : '-')));
  }
  m.append(el('p', '', 'density ' + r.density.toPrecision(3) + ' (fires on ' + r.fires +
    ' of ' + D.meta.n_tokens + ' tokens), max ' + r.max + ', mean when firing ' + r.mean));
  m.append(el('div', 'muted', 'steering vector:'), el('pre', 'steer', r.steer));
  const plots = el('div', 'plots'), h1 = el('div', ''), h2 = el('div', '');
  plots.append(h1, h2);
  m.append(plots);
  m.append(el('h3', '', 'Top activations'));
  const top = el('div', 'top');
  r.top.forEach(e => top.append(example(e, r.max)));
  m.append(top);
  m.append(el('h3', '', 'Quantiles of the non-zero activations'));
  for (const g of r.quantiles) {
    m.append(el('div', 'muted', 'quantile ' + g.quantile[0].toFixed(2) + '-' +
      g.quantile[1].toFixed(2) + ': activations ' + g.min + ' to ' + g.max));
    g.examples.forEach(e => m.append(example(e, r.max)));
  }
  const cols = el('div', 'cols');
  cols.append(
    el('div', '', el('h3', '', 'Promoted tokens'),
      table(['token', 'effect'], r.logits.top.map(([t, v]) => [q(V[t]), v]))),
    el('div', '', el('h3', '', 'Suppressed tokens'),
      table(['token', 'effect'], r.logits.bottom.map(([t, v]) => [q(V[t]), v]))),
    el('div', '', el('h3', '', 'Token lift'),
      table(['token', 'lift'], (r.label ? r.label.lift : []).map(([t, v]) => [q(V[t]), v]))));
  m.append(cols);
  const cols2 = el('div', 'cols');
  cols2.append(
    el('div', '', el('h3', '', 'Nearest by decoder cosine'),
      table(['feature', 'cosine'], r.neighbours.map(([g, c]) => [featLink(g), c]))),
    el('div', '', el('h3', '', 'Most co-activating'),
      table(['feature', 'P(fires | this fires)', 'tokens'],
        r.coactivating.map(([g, p, n]) => [featLink(g), p, n]))));
  m.append(cols2);
  bars(h1, centres(r.hist.edges, true), r.hist.counts, 'activations (log bins)', true);
  bars(h2, centres(r.logits.hist.edges, false), r.logits.hist.counts, 'logit effects', false);
}
function fillIndex() {
  const term = document.getElementById('search').value.toLowerCase();
  const key = document.getElementById('sort').value;
  const score = r => r.label ? r.label.score : -1;
  const keys = {index: r => r.index, density: r => -r.density, score: r => -score(r),
                max: r => -r.max};
  const rows = D.features.filter(r => !term || String(r.index) === term ||
      labelText(r).toLowerCase().includes(term))
    .sort((a, b) => keys[key](a) - keys[key](b) || a.index - b.index);
  const body = document.getElementById('rows');
  body.replaceChildren();
  for (const r of rows) {
    const tr = el('tr', '', el('td', '', r.index), el('td', '', labelText(r)),
      el('td', '', r.label ? r.label.score : ''), el('td', '', r.density.toPrecision(2)),
      el('td', '', r.max));
    tr.onclick = () => { location.hash = 'f' + r.index; };
    body.append(tr);
  }
  document.getElementById('count').textContent = rows.length + ' of ' + D.features.length;
}
function route() {
  const m = /^#f(\d+)$/.exec(location.hash);
  if (m) show(parseInt(m[1], 10));
}
document.getElementById('search').oninput = fillIndex;
document.getElementById('sort').onchange = fillIndex;
window.onhashchange = route;
fillIndex();
if (location.hash) route(); else if (D.features.length) show(D.features[0].index);
"""


def _json_script(data: Any) -> str:
    # "<" escaped as \u003c: no "</script>" (or any tag) can end the element early.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return f'<script id="dash-data" type="application/json">{text}</script>'


def dashboard_html(records: list[dict[str, Any]], vocab: list[str], meta: dict[str, Any]) -> str:
    """The page for `records` (from `feature_record`, token ids) with the model's vocabulary."""
    title = f"Feature dashboard: {meta.get('sae', '')} at {meta.get('hook', '')}"
    side = (
        f"<h3>{escape(title)}</h3>"
        f'<p class="muted">{meta.get("n_tokens", 0):,} tokens, {len(records)} features. '
        "Click a row to open a feature.</p>"
        '<input id="search" placeholder="search labels or #" style="width:60%"> '
        '<select id="sort"><option value="index">index</option>'
        '<option value="density">density</option><option value="score">label score</option>'
        '<option value="max">max activation</option></select> <span id="count" class="muted">'
        '</span><table id="index"><thead><tr><th>#</th><th>label</th><th>score</th>'
        '<th>density</th><th>max</th></tr></thead><tbody id="rows"></tbody></table>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>"
        f'<div id="side">{side}</div><div id="main"></div>\n'
        f"{_json_script({'meta': meta, 'vocab': vocab, 'features': records})}\n"
        f"{plotly_script()}\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
