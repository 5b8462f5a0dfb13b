// A one-line progress bar for bench/run.js, so a 20-minute bench says where it is and how long
// is left:  [#####.....] 7/24 sticky-hit round 2/3 nginx · elapsed 1:02 · ~2:10 left
// On a terminal the line is redrawn in place (and every second, so elapsed time moves during a
// long run); anything else the bench prints goes through log(), which clears the line, writes,
// and redraws. When the stream is not a TTY (CI, pipes, `| tee`) it adds nothing: the per-run
// lines the bench already prints are the record. It never throws: a progress bar must not be
// the reason a bench run is lost.

/** m:ss, or h:mm:ss from an hour up. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * `total` runs; `estimateS` the expected seconds per run, for an ETA before the first run ends
 * (afterwards the average of finished runs is used). start(label) when a run begins, tick() when
 * it ends, log(line) for any other output, clear() to remove the line, done() at the end.
 */
export function createProgress({ total, stream = process.stdout, estimateS = null, now = () => Date.now() }) {
  const tty = Boolean(stream && stream.isTTY);
  const startedAt = now();
  let count = 0;
  let label = '';
  let runStartedAt = null;
  let finishedS = 0;
  let shown = false;
  let finished = false;
  let timer = null;

  const safe = (fn) => (...args) => {
    try {
      return fn(...args);
    } catch {
      return undefined;
    }
  };
  const write = (text) => stream.write(text);

  const line = () => {
    const width = Math.max(20, (Number(stream.columns) || 80) - 1); // the last column would wrap
    const t = now();
    const average = count > 0 ? finishedS / count : estimateS;
    const inRun = runStartedAt === null ? 0 : (t - runStartedAt) / 1000;
    const left = average === null || average === undefined ? null : Math.max(0, average * Math.max(0, total - count) - inRun);
    const eta = left === null ? '' : ` · ~${formatDuration(left)} left`;
    const bar = (w) => {
      const filled = total > 0 ? Math.min(w, Math.round((count / total) * w)) : 0;
      return `[${'#'.repeat(filled)}${'.'.repeat(w - filled)}] ${count}/${total} `;
    };
    // The label matters most: narrow the bar (20, then 10), then drop the elapsed time, then the
    // ETA, and only then cut the label.
    let text = null;
    for (const tail of [` · elapsed ${formatDuration((t - startedAt) / 1000)}${eta}`, eta, '']) {
      const barWidth = [20, 10].find((w) => bar(w).length + label.length + tail.length <= width);
      if (barWidth) {
        text = `${bar(barWidth)}${label}${tail}`;
        break;
      }
    }
    if (text === null) {
      const room = width - bar(10).length - eta.length;
      text = room >= 12 ? `${bar(10)}${label.slice(0, room - 1)}…${eta}` : `${bar(10)}${label}`;
    }
    return text.slice(0, width);
  };

  const redraw = () => {
    if (!tty || finished) return;
    write(`\r${line()}\x1b[K`);
    shown = true;
  };
  const clear = () => {
    if (!tty || !shown) return;
    write('\r\x1b[K');
    shown = false;
  };

  if (tty) {
    timer = setInterval(safe(redraw), 1000);
    timer.unref?.();
  }

  return {
    start: safe((next) => {
      label = String(next ?? '');
      runStartedAt = now();
      redraw();
    }),
    tick: safe((next) => {
      count += 1;
      if (runStartedAt !== null) finishedS += (now() - runStartedAt) / 1000;
      else if (estimateS) finishedS += estimateS;
      runStartedAt = null;
      if (next !== undefined) label = String(next);
      redraw();
    }),
    log: safe((text) => {
      clear();
      const s = String(text ?? '');
      write(s.endsWith('\n') ? s : `${s}\n`);
      redraw();
    }),
    clear: safe(clear),
    done: safe(() => {
      if (timer) clearInterval(timer);
      timer = null;
      clear();
      finished = true;
    }),
  };
}
