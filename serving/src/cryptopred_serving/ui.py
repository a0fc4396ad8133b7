"""The `/ui/{pair}` chart page: candles with predictions and their intervals, self-refreshing.

Plotly's JavaScript comes from the installed plotly package and is served by the app itself
(`/ui/plotly.min.js`), so the page works offline.
"""

from __future__ import annotations

import functools
import html
import json


@functools.cache
def plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    script: str = get_plotlyjs()
    return script.encode()


def chart_page(pair_url: str, candle_seconds: int, refresh_ms: int = 5000) -> str:
    title = html.escape(f"{pair_url.replace('-', '/')} · {candle_seconds}s · cryptopred")
    config = json.dumps(
        {"pair": pair_url, "candle_seconds": candle_seconds, "refresh_ms": refresh_ms}
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script src="/ui/plotly.min.js"></script>
<style>body{{font-family:sans-serif;margin:1rem;background:#fafafa}}
#status{{color:#555;font-size:.9rem}}</style></head>
<body><h1 id="title">{title}</h1><div id="status">loading…</div>
<div id="chart" style="width:100%;height:75vh"></div>
<script>
const CONFIG = {config};
async function draw() {{
  const url = `/v1/chart/${{CONFIG.pair}}?candle_seconds=${{CONFIG.candle_seconds}}&limit=240`;
  let data;
  try {{
    const resp = await fetch(url);
    if (!resp.ok) {{
      document.getElementById("status").textContent = `HTTP ${{resp.status}}`; return;
    }}
    data = await resp.json();
  }} catch (err) {{ document.getElementById("status").textContent = String(err); return; }}
  const t = data.candles.map(c => new Date(c.window_start_ms));
  const traces = [{{type: "candlestick", name: "candles", x: t,
    open: data.candles.map(c => c.open), high: data.candles.map(c => c.high),
    low: data.candles.map(c => c.low), close: data.candles.map(c => c.close)}}];
  const byHorizon = {{}};
  for (const p of data.predictions) (byHorizon[p.horizon_seconds] ??= []).push(p);
  for (const [h, ps] of Object.entries(byHorizon)) {{
    const x = ps.map(p => new Date(p.target_ts_ms - CONFIG.candle_seconds * 1000));
    traces.push({{type: "scatter", mode: "lines", name: `upper ${{h}}s`, x, y: ps.map(p => p.upper),
      line: {{width: 0}}, showlegend: false}});
    traces.push({{type: "scatter", mode: "lines", name: `80% ${{h}}s`, x, y: ps.map(p => p.lower),
      fill: "tonexty", line: {{width: 0}}, opacity: 0.3}});
    traces.push({{type: "scatter", mode: "lines", name: `predicted ${{h}}s`, x,
      y: ps.map(p => p.predicted_close)}});
  }}
  Plotly.react("chart", traces, {{xaxis: {{rangeslider: {{visible: false}}}},
    margin: {{t: 20}}, legend: {{orientation: "h"}}}});
  document.getElementById("status").textContent =
    `${{data.candles.length}} candles, ${{data.predictions.length}} predictions · ` +
    `updated ${{new Date().toLocaleTimeString()}}`;
}}
draw(); setInterval(draw, CONFIG.refresh_ms);
</script></body></html>
"""
