// The viewer page: wires the form, the toolbar and the keyboard to a Tail
// (the WebSocket session) and a LogView (the lines on the page). The page's
// address holds the jobs, the history, the server grep, the filter, the
// highlight and the job shown alone, so a link can be shared; the token
// never goes into it. Around the stream: "load earlier" (/api/v1/history),
// a line's context (/api/v1/context), a link to Kibana (/api/v1/config),
// the jobs list with their rates and the stream's live rate.

import { formatCursor, getJSON, parseCursor, Tail } from './conn.js';
import { formatTime, makeMatcher, parseJobs } from './line.js';
import { LogView } from './view.js';

/** MAX_JOBS is how many jobs one stream may have when /api/v1/config does not say (max_jobs). */
export const MAX_JOBS = 10;
/** PAGE is how many lines "load earlier" asks for at most. */
const PAGE = 200;
/** CONTEXT is how many lines before and after a line its context shows. */
const CONTEXT = 50;
/** RATE_SECONDS is how far back the rate sparkline goes. */
const RATE_SECONDS = 60;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), statusText: $('status-text'), statusDetail: $('status-detail'),
  panel: $('conn-panel'), summary: $('conn-summary'),
  form: $('connect'), formError: $('form-error'),
  job: $('job'), jobs: $('jobs'), jobList: $('job-list'),
  history: $('history'), historyField: $('history-field'), historyName: $('history-name'),
  historyValue: $('history-value'), grep: $('grep'), token: $('token'),
  connect: $('connect-btn'), disconnect: $('disconnect'),
  filter: $('filter'), regex: $('regex'), matchCase: $('case'), hl: $('hl'), only: $('only'),
  rate: $('rate'), spark: $('spark'), rateText: $('rate-text'),
  earlierBar: $('earlier-bar'), earlier: $('earlier'), earlierNote: $('earlier-note'), droppedNote: $('dropped-note'),
  context: $('context'), contextTitle: $('context-title'), contextFrom: $('context-from'),
  contextClose: $('context-close'), contextError: $('context-error'), contextLines: $('context-lines'),
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
let session = null;                  // {jobs, history, grep} of the current session
let hello = {};                      // the session's last hello frame: history_from, archive
let config = {};                     // /api/v1/config: kibana_url, archive
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
  ui.status.title = session ? `${session.jobs.length > 1 ? 'jobs' : 'job'} ${session.jobs.join(', ')}` : '';

  const held = view.held.length + view.heldLost;
  ui.pause.textContent = view.paused ? (held ? `Resume (${held} new)` : 'Resume') : 'Pause';
  ui.pause.setAttribute('aria-pressed', String(view.paused));
  ui.follow.setAttribute('aria-pressed', String(view.following));

  const total = view.rows.length;
  ui.count.textContent = view.matcher || view.only ? `${view.matched} matching` : total ? `${total} lines` : '';
  ui.droppedNote.hidden = view.dropped === 0;
  ui.droppedNote.textContent = `${view.dropped.toLocaleString('en')} older lines dropped: the page keeps at most ${view.maxLines.toLocaleString('en')} lines (View menu)`;
  ui.earlierBar.hidden = !session;
  ui.rate.hidden = !session;
  ui.newLines.hidden = view.following || view.unseen === 0;
  ui.newCount.textContent = String(view.unseen);
  ui.empty.hidden = !!session || total > 0;

  const open = !!tail && conn.state !== 'closed';
  ui.disconnect.disabled = !open;
}

function setConn(s) {
  conn = { ...conn, ...s };
  if (s.state === 'live') rate.counting = true;
  if (s.state === 'connecting') conn.partition = undefined;
  if (s.state !== 'reconnecting' && s.state !== 'closed') conn.reason = conn.code = undefined;
  // Show the form again when the user has something to change in it.
  if (s.state === 'closed') ui.panel.open = true;
  refresh();
}

// ---- sessions ----

/** readForm returns the session the form describes, or an error text. */
function readForm() {
  const jobs = parseJobs(ui.job.value);
  if (!jobs.length) return { error: 'Enter a job.', field: ui.job };
  const most = Number.isInteger(config.max_jobs) && config.max_jobs > 0 ? config.max_jobs : MAX_JOBS;
  if (jobs.length > most) return { error: `At most ${most} jobs in one stream (${jobs.length} given).`, field: ui.job };
  const v = ui.historyValue.value.trim();
  let history = {};
  if (ui.history.value === 'tail') {
    if (!/^\d+$/.test(v)) return { error: 'Lines must be a whole number.', field: ui.historyValue };
    history = { tail: Number(v) };
  } else if (ui.history.value === 'since') {
    if (!v) return { error: 'Since needs a duration such as 5m or a time such as 2026-11-21T10:00:00Z.', field: ui.historyValue };
    history = { since: v };
  }
  return { jobs, history, grep: ui.grep.value };
}

function connect(s) {
  if (tail) tail.stop();
  view.clear();
  view.job = s.jobs[0];
  ui.log.classList.toggle('jobs', s.jobs.length > 1);
  if (view.only && !s.jobs.includes(view.only)) setOnly('');
  conn = { state: 'idle' };
  hello = {};
  session = s;
  resetEarlier();
  resetRate();
  tail = new Tail({
    base: document.baseURI,
    jobs: s.jobs,
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
      hello: (f) => { hello = f; },
      entries: (list) => {
        if (rate.counting) countRate(list.length);
        view.add(list);
      },
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
  const parts = [s.jobs.join(', ')];
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
    for (const j of session.jobs) q.append('job', j);
    for (const [k, v] of Object.entries(session.history)) q.set(k, String(v));
    if (session.grep) q.set('grep', session.grep);
  }
  if (ui.filter.value) q.set('filter', ui.filter.value);
  if (ui.regex.checked) q.set('regex', '1');
  if (ui.matchCase.checked) q.set('case', '1');
  if (ui.hl.value) q.set('hl', ui.hl.value);
  if (view.only) q.set('only', view.only);
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

/** readAddress fills the form from the address; true when it names a job. */
function readAddress() {
  const q = new URLSearchParams(location.search);
  ui.job.value = q.getAll('job').join(', ');
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
  ui.hl.value = q.get('hl') ?? '';
  if (q.get('only')) setOnly(q.get('only'));
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
  if (ui.regex.checked && ui.hl.value) {
    // The highlight of such a link is matched as plain text, for the same
    // reason.
    ui.regex.checked = false;
  }
  if (ui.hl.value && new URLSearchParams(location.search).get('regex') === '1') {
    linkNote = `${linkNote} The highlight from the link is matched as plain text, so that it cannot slow this tab.`.trim();
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
  applyHighlight();
}

/** applyHighlight marks the highlight's matches, with the filter's Regex and Match case. */
function applyHighlight() {
  let m = null;
  try {
    m = makeMatcher(ui.hl.value, { regex: ui.regex.checked, matchCase: ui.matchCase.checked });
    ui.hl.removeAttribute('aria-invalid');
  } catch (e) {
    ui.hl.setAttribute('aria-invalid', 'true');
    ui.filterError.textContent = `The highlight is not a valid regular expression: ${e.message}`;
    ui.filterError.hidden = false;
    return;
  }
  view.setHighlight(m);
  writeAddress();
}

/** setOnly shows one job's lines alone ('': every job's), as a click on a job tag does. */
function setOnly(job) {
  view.setOnly(job);
  ui.only.hidden = !job;
  ui.only.textContent = job ? `Only ${job}` : '';
  if (session) writeAddress();
}

function debounce(fn, ms) {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

// ---- jobs ----

/**
 * jobInfos accepts ["a"], [{job:"a", lines_per_min: 1.5}], [{name:"a"}] and
 * {jobs:[…]}, and returns [{name, lpm}] (lpm: null when not known).
 */
function jobInfos(body) {
  const list = Array.isArray(body) ? body : Array.isArray(body?.jobs) ? body.jobs : [];
  return list
    .map((j) => ({
      name: typeof j === 'string' ? j : j?.job ?? j?.name ?? '',
      lpm: typeof j?.lines_per_min === 'number' ? j.lines_per_min : null,
    }))
    .filter((j) => typeof j.name === 'string' && j.name !== '');
}

/** formatRate writes a rate of lines per minute in a few characters. */
export function formatRate(lpm) {
  if (lpm >= 100) return `${Math.round(lpm).toLocaleString('en')}/min`;
  if (lpm >= 10) return `${lpm.toFixed(0)}/min`;
  return `${Number(lpm.toFixed(1))}/min`;
}

async function loadJobs() {
  jobsAt = Date.now();
  let jobs = [];
  try {
    jobs = jobInfos(await getJSON(document.baseURI, 'api/v1/jobs', {}, ui.token.value.trim()));
  } catch {
    // no list: the job can still be typed
  }
  ui.jobs.replaceChildren(...jobs.map((j) => new Option(j.name, j.name)));
  ui.jobList.replaceChildren(...jobs.slice(0, 50).map(jobItem));
}

/**
 * jobItem is a job of the jobs list: its name (a click tails it alone), its
 * rate, and a box that adds it to the jobs of the form.
 */
function jobItem(j) {
  const li = document.createElement('li');
  li.dataset.job = j.name;
  const pick = document.createElement('input');
  pick.type = 'checkbox';
  pick.checked = parseJobs(ui.job.value).includes(j.name);
  pick.setAttribute('aria-label', `Add ${j.name} to the jobs of the stream`);
  pick.addEventListener('change', () => {
    const jobs = parseJobs(ui.job.value).filter((n) => n !== j.name);
    if (pick.checked) jobs.push(j.name);
    ui.job.value = jobs.join(', ');
  });
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = j.name;
  b.addEventListener('click', () => {
    ui.job.value = j.name;
    ui.form.requestSubmit();
  });
  const lpm = document.createElement('span');
  lpm.className = 'lpm';
  lpm.textContent = j.lpm === null ? '' : formatRate(j.lpm);
  if (j.lpm !== null) lpm.title = `${j.lpm} lines per minute recently (the jobs catalogue)`;
  li.append(pick, b, lpm);
  return li;
}

// ---- the stream's rate: lines per second over the last RATE_SECONDS ----

const rate = {
  counting: false, // from the first caught_up on: history is not counted
  at: 0,           // the second of the last bucket
  buckets: new Array(RATE_SECONDS).fill(0),
};

function resetRate() {
  rate.counting = false;
  rate.buckets.fill(0);
  rate.at = Math.floor(Date.now() / 1000);
  drawRate();
}

/** rollRate moves the buckets on to the current second. */
function rollRate() {
  const now = Math.floor(Date.now() / 1000);
  const gone = Math.min(RATE_SECONDS, now - rate.at);
  if (gone <= 0) return;
  rate.buckets.splice(0, gone);
  for (let i = 0; i < gone; i++) rate.buckets.push(0);
  rate.at = now;
}

function countRate(n) {
  rollRate();
  rate.buckets[RATE_SECONDS - 1] += n;
}

function drawRate() {
  rollRate();
  const b = rate.buckets;
  const top = Math.max(1, ...b);
  ui.spark.firstElementChild.setAttribute('points', b.map((v, i) => `${i},${(20 - (v / top) * 19).toFixed(1)}`).join(' '));
  const last = b[RATE_SECONDS - 2]; // the last whole second
  const total = b.reduce((x, y) => x + y, 0);
  ui.rateText.textContent = `${last.toLocaleString('en')} lines/s · ${total.toLocaleString('en')} in the last minute`;
  ui.rate.dataset.total = String(total);
  ui.rate.dataset.peak = String(Math.max(...b));
  ui.spark.setAttribute('aria-label', `${total} lines in the last ${RATE_SECONDS} seconds, at most ${top} in one`);
}

// ---- load earlier: /api/v1/history ----

const earlier = {
  busy: false,
  stop: '',       // why there is nothing older: '', 'start' or 'retention'
  before: null,   // the answer's cursor for the next older page (a Map)
  dropped: 0,     // view.dropped when it was given: rows dropped since make it stale
};

function resetEarlier() {
  Object.assign(earlier, { busy: false, stop: '', before: null, dropped: 0 });
  ui.earlier.disabled = false;
  ui.earlierNote.textContent = '';
}

/**
 * firstPosition is the stream's first position, per partition the offset
 * of the oldest line the page holds ("load earlier" asks for the lines
 * below it): for a partition the page holds no line of, above the last
 * offset the stream was given; where lines dropped off the top, above the
 * newest of them.
 */
function firstPosition() {
  const pos = new Map();
  for (const [p, o] of tail?.position() ?? []) pos.set(p, o + 1);
  const low = (p, o) => pos.set(p, Math.min(pos.get(p) ?? Infinity, o));
  for (const [p, o] of view.top) low(p, o);
  if (earlier.before && earlier.dropped === view.dropped) for (const [p, o] of earlier.before) low(p, o);
  return pos;
}

/** stopText says why there is nothing older to load. */
function stopText(stop) {
  if (stop === 'retention') {
    const at = hello.history_from ? ` (${hello.history_from})` : '';
    return `Kafka's retention ends here${at}: older lines are gone, as livetail has no archive`;
  }
  return 'The start of the stream: there is nothing older';
}

async function loadEarlier() {
  if (!session || earlier.busy) return;
  if (earlier.dropped !== view.dropped) earlier.stop = ''; // lines dropped since can be loaded again
  if (earlier.stop) return;
  const room = view.room();
  if (room === 0) {
    ui.earlierNote.textContent = `The page keeps at most ${view.maxLines.toLocaleString('en')} lines: raise the limit in View, or Clear, to load earlier lines`;
    return;
  }
  const before = firstPosition();
  if (!before.size) {
    ui.earlierNote.textContent = 'Nothing to load earlier than yet';
    return;
  }
  const s = session;
  earlier.busy = true;
  ui.earlier.disabled = true;
  ui.earlierNote.textContent = 'Loading…';
  try {
    const body = await getJSON(document.baseURI, 'api/v1/history', {
      job: s.jobs, before: formatCursor(before), limit: Math.min(PAGE, room), grep: s.grep,
    }, ui.token.value.trim());
    if (session !== s) return;
    const list = Array.isArray(body?.entries) ? body.entries : [];
    const stop = body?.more ? '' : body?.stop === 'retention' ? 'retention' : 'start';
    const whole = view.prepend(list, stop ? [stopText(stop)] : []);
    // A page cut short (lines came meanwhile) goes on from the oldest line kept.
    earlier.stop = whole ? stop : '';
    earlier.before = whole ? parseCursor(body?.before) : null;
    earlier.dropped = view.dropped;
    ui.earlierNote.textContent = `${list.length} earlier lines loaded${earlier.stop ? `; ${stopText(earlier.stop)}` : ''}`;
  } catch (e) {
    if (session === s) ui.earlierNote.textContent = `Could not load earlier lines: ${e.message}`;
  } finally {
    if (session === s) {
      earlier.busy = false;
      ui.earlier.disabled = !!earlier.stop;
      refresh();
    }
  }
}

// ---- a line's context: /api/v1/context ----

/** contextLine is one line of the context panel. */
function contextLine(e, self) {
  const li = document.createElement('li');
  li.dataset.offset = e.offset;
  if (Number.isInteger(e.pos)) li.dataset.pos = e.pos;
  if (self) {
    li.className = 'self';
    li.setAttribute('aria-current', 'true');
  }
  const ts = document.createElement('time');
  ts.className = 'ts';
  ts.dateTime = e.ts;
  ts.textContent = `${formatTime(e.ts)} `;
  const msg = document.createElement('span');
  msg.className = 'msg';
  msg.textContent = String(e.line ?? '');
  li.append(ts, msg);
  return li;
}

async function showContext(it) {
  ui.contextTitle.textContent = `Context of a line of ${it.job} (partition ${it.partition}, offset ${it.offset})`;
  ui.contextFrom.textContent = 'Loading…';
  ui.contextError.hidden = true;
  ui.contextLines.replaceChildren();
  if (!ui.context.open) ui.context.showModal();
  try {
    const body = await getJSON(document.baseURI, 'api/v1/context', {
      job: it.job, partition: it.partition, offset: it.offset, before: CONTEXT, after: CONTEXT,
    }, ui.token.value.trim());
    const before = body.before ?? [];
    const after = body.after ?? [];
    ui.contextLines.replaceChildren(
      ...before.map((e) => contextLine(e, false)),
      contextLine(body.line ?? it.wire, true),
      ...after.map((e) => contextLine(e, false)),
    );
    ui.contextFrom.textContent = `${before.length} before, ${after.length} after, in file order, from ${body.from === 'index' ? 'the search index' : 'Kafka'}`;
    ui.contextLines.querySelector('.self')?.scrollIntoView({ block: 'center' });
  } catch (e) {
    ui.contextFrom.textContent = '';
    ui.contextError.textContent = `Could not load the context: ${e.message}`;
    ui.contextError.hidden = false;
  }
}

// ---- Open in Kibana ----

/** rison quotes a string for Kibana's URL state ('…' with ! and ' escaped by !). */
function rison(s) {
  return `'${String(s).replace(/[!']/g, '!$&')}'`;
}

/**
 * kibanaURL links to Kibana's Discover at the line's moment (a minute each
 * way), with the query job:"<job>" and the line identified by two filters,
 * kafka.partition and kafka.offset, added disabled: one click on each
 * narrows Discover to the line alone.
 */
export function kibanaURL(base, it) {
  const t = Date.parse(it.ts);
  const from = new Date(t - 60000).toISOString();
  const to = new Date(t + 60000).toISOString();
  const filter = (key, v) => `(meta:(disabled:!t,key:${key},negate:!f,params:(query:${v}),type:phrase),query:(match_phrase:(${key}:${v})))`;
  const query = `job:"${it.job.replace(/["\\]/g, '\\$&')}"`;
  const g = `(time:(from:${rison(from)},to:${rison(to)}))`;
  const a = `(filters:!(${filter('kafka.partition', it.partition)},${filter('kafka.offset', it.offset)}),query:(language:kuery,query:${rison(query)}))`;
  return `${base.replace(/\/+$/, '')}/app/discover#/?_g=${encodeURIComponent(g)}&_a=${encodeURIComponent(a)}`;
}

async function loadConfig() {
  try {
    config = (await getJSON(document.baseURI, 'api/v1/config', {})) ?? {};
  } catch {
    config = {}; // an older livetail: no Kibana links
  }
}

// ---- lines: copy, pretty JSON, download ----

const acts = $('acts-template').content.firstElementChild.cloneNode(true);

function showActs(row) {
  if (!row || acts.parentElement === row) return;
  const it = view.itemOf(row);
  const kibana = acts.querySelector('[data-act="kibana"]');
  kibana.hidden = !config.kibana_url || !it;
  if (!kibana.hidden) {
    kibana.href = kibanaURL(config.kibana_url, it);
    kibana.setAttribute('aria-label', `Open this line in Kibana's Discover`);
  }
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
  const name = (session?.jobs.join('+') ?? 'lines').replace(/[^\w.+-]+/g, '_');
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
ui.hl.addEventListener('input', debounce(applyHighlight, 100));
ui.only.addEventListener('click', () => setOnly(''));
ui.earlier.addEventListener('click', loadEarlier);
ui.contextClose.addEventListener('click', () => ui.context.close());

ui.pause.addEventListener('click', togglePause);
ui.follow.addEventListener('click', () => view.follow());
ui.newLines.addEventListener('click', () => view.follow());
ui.clear.addEventListener('click', () => {
  view.clear();
  resetEarlier();
});
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
  const tag = ev.target.closest('.row > .job');
  if (tag) {
    setOnly(view.only === tag.textContent ? '' : tag.textContent);
    return;
  }
  const b = ev.target.closest('.acts button');
  if (!b) return;
  const row = b.closest('.row');
  if (b.dataset.act === 'context') {
    showContext(view.itemOf(row));
  } else if (b.dataset.act === 'copy') {
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
const fromLink = linkNote; // applying the filter clears it
if (ui.filter.value || ui.hl.value) applyFilter();
if (fromLink) {
  linkNote = fromLink;
  ui.filterError.textContent = linkNote;
  ui.filterError.hidden = false;
}
refresh();
loadJobs();
loadConfig();
setInterval(() => { if (session) drawRate(); }, 1000);
if (named) {
  ui.form.requestSubmit();
} else {
  ui.job.focus();
}
