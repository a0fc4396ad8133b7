"""The `/ui/{pair}` chart page: candles over one horizon's predictions and 80 % interval, with
the served version's live accuracy at that horizon beside them; self-refreshing.

The horizon comes from a selector (the champion's horizons) and is kept in the page's URL
(`?horizon_seconds=300`), so a reload shows the same one. Plotly's JavaScript comes from the
installed plotly package and is served by the app itself (`/ui/plotly.min.js`), so the page
works offline.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Sequence


@functools.cache
def plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    script: str = get_plotlyjs()
    return script.encode()


# The page's script; CONFIG is set before it. Band and median are scatter traces at
# zorder -1: plotly draws a lower zorder first, so the candles (zorder 0) stay on top.
_SCRIPT = """
const $ = id => document.getElementById(id);

async function getJson(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`HTTP ${resp.status} from ${url}`);
  return resp.json();
}

function selectHorizon(horizonSeconds) {
  CONFIG.horizon_seconds = horizonSeconds;
  const url = new URL(window.location.href);
  url.searchParams.set("horizon_seconds", String(horizonSeconds));
  window.history.replaceState(null, "", url.toString());
  draw();
}

function forecastTraces(predictions) {
  const h = CONFIG.horizon_seconds === null ? "" : ` ${CONFIG.horizon_seconds}s`;
  // a prediction is drawn at the start of the candle whose close it forecasts
  const x = predictions.map(p => new Date(p.target_ts_ms - CONFIG.candle_seconds * 1000));
  const band = {type: "scatter", mode: "lines", x, line: {width: 0}, zorder: -1};
  return [
    {...band, name: `upper${h}`, y: predictions.map(p => p.upper), showlegend: false},
    {...band, name: `80% interval${h}`, y: predictions.map(p => p.lower),
      fill: "tonexty", fillcolor: "rgba(31, 119, 180, 0.2)"},
    {type: "scatter", mode: "lines", name: `predicted median${h}`, x, zorder: -1,
      y: predictions.map(p => p.predicted_close),
      line: {color: "rgba(31, 119, 180, 0.8)", dash: "dot"}},
  ];
}

function candleTrace(candles) {
  return {type: "candlestick", name: "candles", x: candles.map(c => new Date(c.window_start_ms)),
    open: candles.map(c => c.open), high: candles.map(c => c.high),
    low: candles.map(c => c.low), close: candles.map(c => c.close)};
}

// [label, value] rows of the served version's live accuracy at the selected horizon
function liveFigures(metrics, modelName, modelVersion) {
  const row = metrics.find(m => m.model_name === modelName && m.model_version === modelVersion
    && m.horizon_seconds === CONFIG.horizon_seconds);
  if (!row || !row.n) return [];
  const figures = [["80% coverage", `${(100 * row.interval_coverage).toFixed(1)} %`]];
  if (typeof row.skill === "number") {
    figures.push(["pinball skill vs baseline", row.skill.toFixed(3)]);
  } else if (row.persistence_mae > 0) {
    figures.push(["MAE skill vs persistence", (1 - row.mae / row.persistence_mae).toFixed(3)]);
  }
  if (typeof row.pinball_loss === "number") {
    figures.push(["pinball loss", row.pinball_loss.toPrecision(4)]);
  }
  figures.push(["outcomes", String(row.n)]);
  return figures;
}

function showLive(figures, modelVersion) {
  $("live-version").textContent = modelVersion === null
    ? "no champion yet" : `version ${modelVersion} · ${CONFIG.horizon_seconds} s`;
  $("live").innerHTML = figures.length === 0 ? "<dd>no outcomes yet</dd>"
    : figures.map(([label, value]) => `<dt>${label}</dt><dd>${value}</dd>`).join("");
}

async function draw() {
  const query = new URLSearchParams({candle_seconds: CONFIG.candle_seconds, limit: 240});
  if (CONFIG.horizon_seconds !== null) query.set("horizon_seconds", CONFIG.horizon_seconds);
  let chart, metrics;
  try {
    [chart, metrics] = await Promise.all([
      getJson(`/v1/chart/${CONFIG.pair}?${query}`),
      getJson(`/v1/metrics/live?pair=${CONFIG.pair}&window=${CONFIG.live_window}`),
    ]);
  } catch (err) { $("status").textContent = String(err); return; }
  const traces = [...forecastTraces(chart.predictions), candleTrace(chart.candles)];
  Plotly.react("chart", traces, {xaxis: {rangeslider: {visible: false}},
    margin: {t: 20}, legend: {orientation: "h"}});
  showLive(liveFigures(metrics, chart.model_name, chart.model_version), chart.model_version);
  $("status").textContent = `${chart.candles.length} candles, ` +
    `${chart.predictions.length} predictions · updated ${new Date().toLocaleTimeString()}`;
}

$("horizon").addEventListener("change", event => selectHorizon(Number(event.target.value)));
draw(); setInterval(draw, CONFIG.refresh_ms);
"""


def chart_page(
    pair_url: str,
    candle_seconds: int,
    horizons_seconds: Sequence[int] = (),
    horizon_seconds: int | None = None,
    refresh_ms: int = 5000,
    live_window: str = "1h",
) -> str:
    """The page's HTML: `horizons_seconds` are the champion's (the selector's choices),
    `horizon_seconds` the one shown (default: the first); `live_window` the live metrics'."""
    if horizon_seconds is None and horizons_seconds:
        horizon_seconds = horizons_seconds[0]
    title = html.escape(f"{pair_url.replace('-', '/')} · {candle_seconds}s · cryptopred")
    config = json.dumps(
        {
            "pair": pair_url,
            "candle_seconds": candle_seconds,
            "horizon_seconds": horizon_seconds,
            "refresh_ms": refresh_ms,
            "live_window": live_window,
        }
    )
    options = "".join(
        f'<option value="{h}"{" selected" if h == horizon_seconds else ""}>{h} s</option>'
        for h in horizons_seconds
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script src="/ui/plotly.min.js"></script>
<style>body{{font-family:sans-serif;margin:1rem;background:#fafafa}}
#status{{color:#555;font-size:.9rem}} main{{display:flex;gap:1rem}}
#chart{{flex:1;height:75vh}} aside{{width:15rem}} dt{{color:#555;font-size:.85rem}}
dd{{margin:0 0 .6rem 0;font-size:1.2rem}}</style></head>
<body><h1 id="title">{title}</h1>
<label>horizon <select id="horizon">{options}</select></label>
<div id="status">loading…</div>
<main><div id="chart"></div>
<aside><h2>Live, last {html.escape(live_window)}</h2><div id="live-version"></div>
<dl id="live"></dl></aside></main>
<script>
const CONFIG = {config};
{_SCRIPT}</script></body></html>
"""
