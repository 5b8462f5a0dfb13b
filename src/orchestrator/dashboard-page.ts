// The dashboard page, shipped inside the package (the machines it runs on have no internet, so
// no CDN): plain HTML, CSS and a script drawing its own canvas charts from /dashboard/ws frames.
// `window.tetherDashboard` holds what is drawn, for operators' scripts and the browser test.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tether dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg: #0f1419; --panel: #182028; --text: #d8dee4; --muted: #7d8a96; --up: #3fb950; --down: #f85149; --drain: #d29922; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 20px; border-bottom: 1px solid #26313b; }
  header h1 { font-size: 18px; margin: 0; }
  #status { color: var(--muted); }
  #status.live { color: var(--up); }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px 20px; }
  section { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
  section h2 { font-size: 13px; font-weight: 600; margin: 0 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
  .wide { grid-column: 1 / -1; }
  canvas { width: 100%; height: 220px; display: block; }
  .legend { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 6px; color: var(--muted); font-size: 12px; }
  .legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #26313b; font-variant-numeric: tabular-nums; }
  th { color: var(--muted); font-weight: 500; font-size: 12px; }
  .state { font-weight: 600; }
  .state.up { color: var(--up); } .state.down { color: var(--down); } .state.draining { color: var(--drain); }
  #feed { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow: auto; }
  #feed li { padding: 6px 4px; border-bottom: 1px solid #26313b; }
  #feed time { color: var(--muted); margin-right: 8px; font-size: 12px; }
  #feed .error { color: var(--down); } #feed .warn { color: var(--drain); }
  .empty { color: var(--muted); font-style: italic; }
  tr.expiring td { color: #b45309; font-weight: 600; }
</style>
</head>
<body>
<header><h1>Tether</h1><span id="status">connecting…</span></header>
<main>
  <section><h2>Requests per second</h2><canvas id="rps"></canvas><div class="legend" id="legend-rps"></div></section>
  <section><h2>Upstream latency p50 / p99 (ms)</h2><canvas id="lat"></canvas><div class="legend" id="legend-lat"></div></section>
  <section class="wide"><h2>Backends</h2>
    <table><thead><tr><th>Pool</th><th>Backend</th><th>Address</th><th>State</th><th>Weight</th><th>In flight</th><th>req/s</th><th title="sticky sessions started on this backend">Sessions</th><th title="sessions started per second">new/s</th><th title="requests per second routed here by their session">sticky req/s</th><th>p50 ms</th><th>p99 ms</th><th>Source</th></tr></thead>
    <tbody id="backends"><tr><td colspan="10" class="empty">waiting for data…</td></tr></tbody></table>
  </section>
  <section class="wide" id="certs-section" hidden><h2>Certificates</h2>
    <table><thead><tr><th>Names</th><th>Issuer</th><th>Expires</th><th>Key</th><th>File</th></tr></thead>
    <tbody id="certs"></tbody></table>
  </section>
  <section class="wide"><h2>Alerts</h2><ul id="feed"><li class="empty" id="feed-empty">no alerts</li></ul></section>
</main>
<script>
(() => {
  const WINDOW = 120;
  const COLORS = ['#58a6ff', '#3fb950', '#d29922', '#f778ba', '#a371f7', '#79c0ff', '#ffa657', '#56d364'];
  const state = { ticks: 0, series: {}, alerts: [], backends: [] };
  window.tetherDashboard = state;
  const colorOf = (k) => { const keys = Object.keys(state.series); return COLORS[keys.indexOf(k) % COLORS.length]; };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const fmt = (v) => (v === null || v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(1));

  function draw(id, pick, legendId) {
    const canvas = document.getElementById(id);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext('2d');
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    const lines = [];
    for (const [k, s] of Object.entries(state.series)) for (const p of pick(s)) lines.push({ k, ...p });
    let max = 1;
    for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
    max *= 1.1;
    g.strokeStyle = '#26313b'; g.fillStyle = '#7d8a96'; g.font = '11px system-ui'; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = 8 + ((h - 24) * i) / 4;
      g.beginPath(); g.moveTo(36, y); g.lineTo(w, y); g.stroke();
      g.fillText(fmt(max * (1 - i / 4)), 0, y + 4);
    }
    for (const l of lines) {
      g.strokeStyle = colorOf(l.k); g.lineWidth = l.thin ? 1 : 2; g.setLineDash(l.dash ? [4, 3] : []);
      g.beginPath();
      let started = false;
      l.values.forEach((v, i) => {
        if (v === null) { started = false; return; }
        const x = 36 + ((w - 40) * (i + WINDOW - l.values.length)) / (WINDOW - 1);
        const y = 8 + (h - 24) * (1 - v / max);
        if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
      });
      g.stroke();
    }
    g.setLineDash([]);
    document.getElementById(legendId).innerHTML = Object.keys(state.series).map((k) => '<span><i style="background:' + colorOf(k) + '"></i>' + esc(k) + '</span>').join('');
  }

  function render() {
    draw('rps', (s) => [{ values: s.rps }], 'legend-rps');
    draw('lat', (s) => [{ values: s.p50 }, { values: s.p99, dash: true }], 'legend-lat');
    const rows = state.backends.map((b) =>
      '<tr><td>' + esc(b.pool) + '</td><td>' + esc(b.id) + '</td><td>' + esc(b.address) + '</td><td class="state ' + b.state + '">' + b.state + (b.why ? ' (' + esc(b.why) + ')' : '') +
      '</td><td>' + b.weight + '</td><td>' + b.active + '</td><td data-rps="' + b.pool + '/' + b.id + '">' + fmt(b.rps) + '</td><td data-sessions="' + b.pool + '/' + b.id + '">' + b.sessions + '</td><td>' + fmt(b.newSessionsPerSec) + '</td><td>' + fmt(b.stickyPerSec) + '</td><td>' + fmt(b.p50) + '</td><td>' + fmt(b.p99) + '</td><td>' + esc(b.source) + '</td></tr>');
    document.getElementById('backends').innerHTML = rows.join('') || '<tr><td colspan="10" class="empty">no backends</td></tr>';
  }

  /** HTTPS certificates (none: the section stays hidden); one expiring within 14 days is marked. */
  function renderCertificates(list) {
    document.getElementById('certs-section').hidden = list.length === 0;
    document.getElementById('certs').innerHTML = list.map((c) => {
      const days = Math.floor(c.expiresInSeconds / 86400);
      const when = c.expired ? 'expired ' + (-days) + ' day(s) ago' : 'in ' + days + ' day(s)';
      return '<tr data-file="' + esc(c.file) + '"' + (c.expiresInSeconds < 14 * 86400 ? ' class="expiring"' : '') + '><td>' + esc(c.names.join(', ')) + (c.default ? ' <em>(default)</em>' : '') + '</td><td>' + esc(c.issuer) +
        '</td><td>' + esc(c.notAfter.slice(0, 10)) + ' (' + when + ')</td><td>' + esc(c.keyType) + '</td><td>' + esc(c.file) + '</td></tr>';
    }).join('');
  }

  function addAlerts(list) {
    const feed = document.getElementById('feed');
    for (const a of list) {
      state.alerts.push(a);
      document.getElementById('feed-empty')?.remove();
      const li = document.createElement('li');
      li.className = a.severity;
      li.dataset.type = a.type;
      li.innerHTML = '<time>' + esc(new Date(a.time).toLocaleTimeString()) + '</time>' + esc(a.message);
      feed.prepend(li);
    }
    while (feed.children.length > 200) feed.lastElementChild.remove();
  }

  function connect() {
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/dashboard/ws');
    const status = document.getElementById('status');
    ws.onopen = () => { status.textContent = 'live'; status.className = 'live'; };
    ws.onclose = () => { status.textContent = 'disconnected, retrying…'; status.className = ''; setTimeout(connect, 2000); };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === 'hello') { addAlerts(msg.alerts); renderCertificates(msg.certificates); return; }
      if (msg.certificates) renderCertificates(msg.certificates);
      state.ticks++;
      state.backends = msg.backends;
      for (const b of msg.backends) {
        const k = b.pool + '/' + b.id;
        const s = (state.series[k] ??= { rps: [], p50: [], p99: [] });
        s.rps.push(b.rps); s.p50.push(b.p50); s.p99.push(b.p99);
        for (const arr of [s.rps, s.p50, s.p99]) if (arr.length > WINDOW) arr.shift();
      }
      addAlerts(msg.alerts);
      render();
    };
  }
  connect();
  window.addEventListener('resize', render);
})();
</script>
</body>
</html>
`;
