// The viewer page: wires the form, the toolbar and the keyboard to a Tail
// (the WebSocket session) and a LogView (the lines on the page). The page's
// address holds the job, the history, the server grep and the filter, so a
// link can be shared; the token never goes into it.

import { Tail } from './conn.js';
import { makeMatcher } from './line.js';
import { LogView } from './view.js';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), statusText: $('status-text'), statusDetail: $('status-detail'),
  panel: $('conn-panel'), summary: $('conn-summary'),
  form: $('connect'), formError: $('form-error'),
  job: $('job'), jobs: $('jobs'), jobList: $('job-list'),
  history: $('history'), historyField: $('history-field'), historyName: $('history-name'),
  historyValue: $('history-value'), grep: $('grep'), token: $('token'),
  connect: $('connect-btn'), disconnect: $('disconnect'),
  filter: $('filter'), regex: $('regex'), matchCase: $('case'),
  count: $('count'), filterError: $('filter-error'),
  pause: $('pause'), follow: $('follow'), download: $('download'), clear: $('clear'),
  optTs: $('opt-ts'), optSrc: $('opt-src'), optWrap: $('opt-wrap'),
  optPretty: $('opt-pretty'), optMax: $('opt-max'),
  log: $('log'), empty: $('empty'), newLines: $('new-lines'), newCount: $('new-count'),
};

const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  'catching-up': 'Catching up…',
  live: 'Live',
};

let tail = null;                     // the current session, if any
let conn = { state: 'idle' };        // its last reported state
let session = null;                  // {job, history, grep} of the current session
let linkNote = '';                   // what became of a regular expression from the link
const narrow = matchMedia('(max-width: 600px)');

const view = new LogView(ui.log, { onChange: refresh });

// ---- preferences (kept in this browser, not in the address) ----

const PREFS_KEY = 'logpipe.livetail.viewer';

function loadPrefs() {
  try {
    const p = JSON.parse(localStorage.getItem(PREFS_KEY) ?? '{}');
    if (typeof p.ts === 'boolean') ui.optTs.checked = p.ts;
    if (typeof p.src === 'boolean') ui.optSrc.checked = p.src;
    if (typeof p.wrap === 'boolean') ui.optWrap.checked = p.wrap;
    if (typeof p.pretty === 'boolean') ui.optPretty.checked = p.pretty;
    if ([...ui.optMax.options].some((o) => o.value === String(p.max))) ui.optMax.value = String(p.max);
  } catch {
    // unreadable preferences: keep the defaults
  }
}

function savePrefs() {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify({
      ts: ui.optTs.checked, src: ui.optSrc.checked, wrap: ui.optWrap.checked,
      pretty: ui.optPretty.checked, max: Number(ui.optMax.value),
    }));
  } catch {
    // storage disabled: preferences last for this page only
  }
}

function applyOptions() {
  ui.log.classList.toggle('no-ts', !ui.optTs.checked);
  ui.log.classList.toggle('show-src', ui.optSrc.checked);
  ui.log.classList.toggle('nowrap', !ui.optWrap.checked);
  if (view.prettyAll !== ui.optPretty.checked) view.setPrettyAll(ui.optPretty.checked);
  if (view.maxLines !== Number(ui.optMax.value)) view.setMaxLines(Number(ui.optMax.value));
  if (view.following) view.toBottom();
}

// ---- status and counters ----

function refresh() {
  let state = conn.state;
  let text = STATE_TEXT[state] ?? '';
  if (state === 'reconnecting') text = `Reconnecting (attempt ${conn.attempt}): ${conn.text}`;
  if (state === 'closed') text = `Closed: ${conn.text}`;
  if (view.paused && (state === 'live' || state === 'catching-up')) {
    state = 'paused';
    text = 'Paused';
  }
  const detail = (state === 'reconnecting' || state === 'closed') && conn.reason && conn.reason !== conn.text
    ? ` — ${conn.reason}` : '';
  if (ui.status.dataset.state !== state || ui.statusText.textContent !== text || ui.statusDetail.textContent !== detail) {
    ui.status.dataset.state = state;
    ui.status.dataset.code = conn.code ?? '';
    ui.statusText.textContent = text;
    ui.statusDetail.textContent = detail;
  }
  ui.status.title = session ? `job ${session.job}${conn.partition !== undefined ? ` · partition ${conn.partition}` : ''}` : '';

  const held = view.held.length + view.heldLost;
  ui.pause.textContent = view.paused ? (held ? `Resume (${held} new)` : 'Resume') : 'Pause';
  ui.pause.setAttribute('aria-pressed', String(view.paused));
  ui.follow.setAttribute('aria-pressed', String(view.following));

  const total = view.rows.length;
  ui.count.textContent = view.matcher ? `${view.matched} matching` : total ? `${total} lines` : '';
  ui.newLines.hidden = view.following || view.unseen === 0;
  ui.newCount.textContent = String(view.unseen);
  ui.empty.hidden = !!session || total > 0;

  const open = !!tail && conn.state !== 'closed';
  ui.disconnect.disabled = !open;
}

function setConn(s) {
  conn = { ...conn, ...s };
  if (s.state === 'connecting') conn.partition = undefined;
  if (s.state !== 'reconnecting' && s.state !== 'closed') conn.reason = conn.code = undefined;
  // Show the form again when the user has something to change in it.
  if (s.state === 'closed') ui.panel.open = true;
  refresh();
}

// ---- sessions ----

/** readForm returns the session the form describes, or an error text. */
function readForm() {
  const job = ui.job.value.trim();
  if (!job) return { error: 'Enter a job.', field: ui.job };
  const v = ui.historyValue.value.trim();
  let history = {};
  if (ui.history.value === 'tail') {
    if (!/^\d+$/.test(v)) return { error: 'Lines must be a whole number.', field: ui.historyValue };
    history = { tail: Number(v) };
  } else if (ui.history.value === 'since') {
    if (!v) return { error: 'Since needs a duration such as 5m or a time such as 2026-11-21T10:00:00Z.', field: ui.historyValue };
    history = { since: v };
  }
  return { job, history, grep: ui.grep.value };
}

function connect(s) {
  if (tail) tail.stop();
  view.clear();
  conn = { state: 'idle' };
  session = s;
  tail = new Tail({
    base: document.baseURI,
    job: s.job,
    history: s.history,
    grep: s.grep,
    token: () => ui.token.value.trim(),
    // A page that embeds the viewer may define window.livetailToken, an
    // async function returning a fresh token: it is asked when the token
    // expires (4401), and the session resumes with its cursor.
    freshToken: typeof window.livetailToken === 'function' ? () => window.livetailToken() : null,
    handlers: {
      state: setConn,
      token: (tok) => { ui.token.value = tok; },
      entries: (list) => view.add(list),
      // Before caught_up, skipped lines are history that was not read (older
      // than Kafka keeps, or beyond the server's scan limit); after, lines
      // the browser was too slow to take.
      dropped: (f) => view.marker(
        conn.state === 'live'
          ? `${f.count} lines skipped: the browser fell behind`
          : `${f.count} lines of history skipped: older than the server reads`,
        `offsets ${f.from_offset} to ${f.to_offset}${Number.isInteger(f.partition) ? ` of partition ${f.partition}` : ''}`,
      ),
    },
  });
  tail.start();
  writeAddress();
  ui.summary.textContent = describe(s);
  if (narrow.matches) ui.panel.open = false;
  refresh();
}

/** describe sums a session up in a few words. */
function describe(s) {
  const parts = [s.job];
  if ('tail' in s.history) parts.push(`last ${s.history.tail} lines`);
  else if ('since' in s.history) parts.push(`since ${s.history.since}`);
  else parts.push('live only');
  if (s.grep) parts.push(`grep ${s.grep}`);
  return parts.join(' · ');
}

function disconnect() {
  if (tail) tail.stop();
  tail = null;
  refresh();
}

// ---- the address ----

function writeAddress() {
  const q = new URLSearchParams();
  if (session) {
    q.set('job', session.job);
    for (const [k, v] of Object.entries(session.history)) q.set(k, String(v));
    if (session.grep) q.set('grep', session.grep);
  }
  if (ui.filter.value) q.set('filter', ui.filter.value);
  if (ui.regex.checked) q.set('regex', '1');
  if (ui.matchCase.checked) q.set('case', '1');
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

/** readAddress fills the form from the address; true when it names a job. */
function readAddress() {
  const q = new URLSearchParams(location.search);
  ui.job.value = q.get('job') ?? '';
  if (q.has('tail')) {
    ui.history.value = 'tail';
    ui.historyValue.value = q.get('tail');
  } else if (q.has('since')) {
    ui.history.value = 'since';
    ui.historyValue.value = q.get('since');
  } else if (q.has('job')) {
    ui.history.value = 'live';
  }
  ui.grep.value = q.get('grep') ?? '';
  ui.filter.value = q.get('filter') ?? '';
  ui.regex.checked = q.get('regex') === '1';
  ui.matchCase.checked = q.get('case') === '1';
  linkNote = '';
  if (ui.regex.checked && ui.filter.value) {
    // A regular expression from a link is never run in this tab, where a
    // pattern such as (a+)+$ could freeze it: it becomes the server-side
    // grep (RE2, linear time) when there is none.
    const pattern = ui.filter.value;
    ui.filter.value = '';
    ui.regex.checked = false;
    if (!ui.grep.value) {
      ui.grep.value = ui.matchCase.checked ? pattern : `(?i)${pattern}`;
      linkNote = 'The regular expression from the link filters on the server (grep), so that it cannot slow this tab.';
    } else {
      linkNote = 'The regular expression from the link was not applied: the link also has a grep.';
    }
  }
  historyChanged(false);
  return !!ui.job.value;
}

function historyChanged(reset = true) {
  const h = ui.history.value;
  ui.historyField.hidden = h === 'live';
  ui.historyName.textContent = h === 'since' ? 'Since' : 'Lines';
  ui.historyValue.inputMode = h === 'since' ? 'text' : 'numeric';
  ui.historyValue.placeholder = h === 'since' ? '5m or 2026-11-21T10:00:00Z' : '100';
  if (reset) ui.historyValue.value = h === 'since' ? '15m' : '100';
}

// ---- filter ----

function applyFilter() {
  linkNote = '';
  let m = null;
  try {
    m = makeMatcher(ui.filter.value, { regex: ui.regex.checked, matchCase: ui.matchCase.checked });
    ui.filter.removeAttribute('aria-invalid');
    ui.filterError.hidden = true;
  } catch (e) {
    ui.filter.setAttribute('aria-invalid', 'true');
    ui.filterError.textContent = `Not a valid regular expression: ${e.message}`;
    ui.filterError.hidden = false;
    return;
  }
  view.setFilter(m);
  writeAddress();
}

function debounce(fn, ms) {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

// ---- jobs ----

/** jobNames accepts ["a"], [{job:"a"}], [{name:"a"}] and {jobs:[…]}. */
function jobNames(body) {
  const list = Array.isArray(body) ? body : Array.isArray(body?.jobs) ? body.jobs : [];
  return list
    .map((j) => (typeof j === 'string' ? j : j?.job ?? j?.name ?? ''))
    .filter((j) => typeof j === 'string' && j !== '');
}

async function loadJobs() {
  jobsAt = Date.now();
  let names = [];
  try {
    const r = await fetch(new URL('api/v1/jobs', document.baseURI), { headers: { Accept: 'application/json' } });
    if (r.ok) names = jobNames(await r.json());
  } catch {
    // no list: the job can still be typed
  }
  ui.jobs.replaceChildren(...names.map((n) => new Option(n, n)));
  ui.jobList.replaceChildren(...names.slice(0, 50).map((n) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = n;
    b.addEventListener('click', () => {
      ui.job.value = n;
      ui.form.requestSubmit();
    });
    li.append(b);
    return li;
  }));
}

// ---- lines: copy, pretty JSON, download ----

const acts = $('acts-template').content.firstElementChild.cloneNode(true);

function showActs(row) {
  if (!row || acts.parentElement === row) return;
  const json = acts.querySelector('[data-act="json"]');
  json.hidden = !row.classList.contains('is-json');
  const pretty = row.classList.contains('pretty');
  json.textContent = pretty ? 'Raw' : 'JSON';
  json.setAttribute('aria-pressed', String(pretty));
  json.setAttribute('aria-label', pretty ? 'Show the raw line' : 'Pretty-print this JSON line');
  acts.querySelector('[data-act="copy"]').setAttribute('aria-label', `Copy line at offset ${row.dataset.offset}`);
  row.append(acts);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the older way
    }
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.style.position = 'fixed';
  ta.style.opacity = '0';
  const back = document.activeElement;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  back?.focus?.();
  return ok;
}

function download() {
  const text = view.visibleText(ui.optTs.checked);
  const name = (session?.job ?? 'lines').replace(/[^\w.-]+/g, '_');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  a.download = `${name}-${stamp}.txt`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function togglePause() {
  if (view.paused) view.resume();
  else view.pause();
}

// ---- events ----

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const s = readForm();
  ui.formError.hidden = !s.error;
  ui.formError.textContent = s.error ?? '';
  for (const f of [ui.job, ui.historyValue]) f.removeAttribute('aria-invalid');
  if (s.error) {
    s.field.setAttribute('aria-invalid', 'true');
    s.field.focus();
    return;
  }
  connect(s);
});
ui.disconnect.addEventListener('click', disconnect);
// The connection form folds away on a narrow screen while a session runs.
narrow.addEventListener('change', () => { ui.panel.open = !narrow.matches || !tail || conn.state === 'closed'; });
ui.history.addEventListener('change', () => historyChanged());
let jobsAt = 0;
ui.job.addEventListener('focus', () => {
  if (Date.now() - jobsAt > 30000) loadJobs();
});
ui.token.addEventListener('change', () => tail?.tokenChanged());

const filterSoon = debounce(applyFilter, 100);
ui.filter.addEventListener('input', filterSoon);
ui.regex.addEventListener('change', applyFilter);
ui.matchCase.addEventListener('change', applyFilter);

ui.pause.addEventListener('click', togglePause);
ui.follow.addEventListener('click', () => view.follow());
ui.newLines.addEventListener('click', () => view.follow());
ui.clear.addEventListener('click', () => view.clear());
ui.download.addEventListener('click', download);
for (const el of [ui.optTs, ui.optSrc, ui.optWrap, ui.optPretty, ui.optMax]) {
  el.addEventListener('change', () => {
    applyOptions();
    savePrefs();
  });
}

// The View menu closes on a click elsewhere, and on Escape.
const menu = document.querySelector('.menu');
document.addEventListener('click', (ev) => {
  if (menu.open && !menu.contains(ev.target)) menu.open = false;
});
menu.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && menu.open) {
    menu.open = false;
    menu.querySelector('summary').focus();
  }
});

ui.log.addEventListener('mouseover', (ev) => showActs(ev.target.closest('.row')));
ui.log.addEventListener('click', async (ev) => {
  const b = ev.target.closest('.acts button');
  if (!b) return;
  const row = b.closest('.row');
  if (b.dataset.act === 'copy') {
    const ok = await copyText(view.lineOf(row));
    b.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { b.textContent = 'Copy'; }, 1500);
  } else {
    const on = view.togglePretty(row);
    b.textContent = on ? 'Raw' : 'JSON';
    b.setAttribute('aria-pressed', String(on));
  }
});

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  const t = ev.target instanceof Element ? ev.target : document.body;
  if (t.closest('input, textarea, select, [contenteditable]')) {
    if (ev.key === 'Escape' && t === ui.filter) ui.log.focus();
    return;
  }
  if (ev.key === '/') {
    ev.preventDefault();
    ui.filter.focus();
    ui.filter.select();
  } else if (ev.key === ' ' && !t.closest('button, summary, a')) {
    ev.preventDefault();
    togglePause();
  } else if (ev.key === 'End') {
    ev.preventDefault();
    view.follow();
  }
});

// ---- start ----

loadPrefs();
applyOptions();
const named = readAddress();
if (ui.filter.value) applyFilter();
if (linkNote) {
  ui.filterError.textContent = linkNote;
  ui.filterError.hidden = false;
}
refresh();
loadJobs();
if (named) {
  ui.form.requestSubmit();
} else {
  ui.job.focus();
}
