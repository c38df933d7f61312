// One tail session over livetail's WebSocket API (DESIGN.md, "livetail HTTP
// API"), with the reconnect policy of its close-code table. A Tail resumes
// with the cursor of the last frame it got (opaque: it is only echoed), so
// that a reconnect shows no line twice and skips none, and drops any entry
// at or below the offset it last saw of that entry's partition all the same.
//
// A line the agent sent twice (killed between Kafka's acknowledgement and
// its next save of offsets) is two Kafka records: livetail skips the second
// within a session, but a session resumed by cursor does not know what the
// one before sent. So a Tail also remembers, per source file (an entry's
// `src`), the highest `pos` (the line's offset in the file) it has shown,
// and drops an entry of that source at or below it: across reconnects
// too, for MAX_SOURCES sources, the least recently seen forgotten first.
// Entries without `src` (lines of other producers) are never dropped so.

/** Close codes and what the viewer does about them. */
export const CLOSE = {
  1000: { action: 'stop', text: 'closed by the server' },
  1001: { action: 'retry', quick: true, text: 'server restarting' },
  1011: { action: 'retry', text: 'upstream (Kafka) unavailable' },
  1013: { action: 'retry', slow: true, text: 'the server is full: trying again later' },
  4400: { action: 'stop', text: 'bad request' },
  4401: { action: 'auth', text: 'token missing, invalid or expired' },
  4403: { action: 'stop', text: 'the token does not allow this job' },
  4408: { action: 'retry', quick: true, text: 'session reached its maximum duration' },
  4429: { action: 'stop', text: 'too many connections: close other tails, then connect again' },
};

/** closeAction says what to do after a close with code. */
export function closeAction(code) {
  return CLOSE[code] ?? {
    action: 'retry',
    text: code === 1006 ? 'connection lost' : `connection closed (code ${code})`,
  };
}

const QUICK_MS = 500;     // first retry after 1001 and 4408
const BASE_MS = 1000;     // first retry otherwise
const SLOW_MS = 5000;     // first retry after 1013 (the server is full)
const MAX_MS = 30000;     // backoff ceiling
const SLOW_MAX_MS = 60000; // backoff ceiling after 1013
const HEALTHY_MS = 10000; // a session open this long resets the backoff
export const MAX_SOURCES = 4096; // source files a Tail remembers the highest pos of

/**
 * backoff returns the delay before retry number attempt (1, 2, …): it
 * doubles from the first delay up to the ceiling, and a random half of it
 * is taken off so that many tabs do not come back at once. speed is
 * 'quick' (1001, 4408), 'slow' (1013: longer, as the server asked) or
 * anything else.
 */
export function backoff(attempt, speed, random = Math.random) {
  const first = speed === 'quick' || speed === true ? QUICK_MS : speed === 'slow' ? SLOW_MS : BASE_MS;
  const ceiling = speed === 'slow' ? SLOW_MAX_MS : MAX_MS;
  const d = Math.min(ceiling, first * 2 ** Math.min(attempt - 1, 16));
  return Math.round(d / 2 + random() * (d / 2));
}

/** apiURL builds the address of an API path for params; an array value is given once per element (job=a&job=b). */
export function apiURL(base, path, params) {
  const u = new URL(path, base);
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (x !== undefined && x !== null && x !== '') u.searchParams.append(k, String(x));
    }
  }
  return u;
}

/** tailURL builds the WebSocket address of /api/v1/tail for params. */
export function tailURL(base, params) {
  const u = apiURL(base, 'api/v1/tail', params);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

/** parseCursor reads a cursor "p:o[,p:o…]" into a Map partition → offset; anything else gives an empty Map. */
export function parseCursor(c) {
  const m = new Map();
  if (typeof c !== 'string') return m;
  for (const part of c.split(',')) {
    const [p, o] = part.split(':').map(Number);
    if (Number.isInteger(p) && Number.isInteger(o)) m.set(p, o);
  }
  return m;
}

/** formatCursor writes a Map partition → offset as "p:o,…", partitions in order. */
export function formatCursor(m) {
  return [...m].sort((a, b) => a[0] - b[0]).map(([p, o]) => `${p}:${o}`).join(',');
}

/**
 * getJSON fetches an API path with the token as a Bearer header and returns
 * its JSON body; a failure throws an Error with the server's own words.
 */
export async function getJSON(base, path, params, token = '') {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(apiURL(base, path, params), { headers });
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (!r.ok) {
    const e = new Error(body?.error ? `${body.error}${body.param ? ` (${body.param})` : ''}` : `${r.status} ${r.statusText}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

/**
 * Tail runs one session: start() connects, stop() closes for good.
 *
 * handlers:
 *   state({state, attempt, text, reason, code}) — connecting,
 *       catching-up, live, reconnecting, closed; text says what the close
 *       code means, reason is the server's own words
 *   entries(list) — new entries, in offset order, never seen before
 *   dropped({count, from_offset, to_offset})
 *   hello(frame) — the hello frame: jobs, history_from, archive
 *
 * jobs are the jobs of the stream (1 to 10; job, one job, also works).
 */
export class Tail {
  constructor({ base, job, jobs, history = {}, grep = '', token = () => '', freshToken = null, handlers }) {
    this.base = base;
    this.jobs = jobs ?? [job];
    this.history = history; // {tail: N} or {since: S} or {}
    this.grep = grep;
    this.token = token;     // read at each connect: a new token is picked up
    this.freshToken = freshToken; // optional async () => token, asked after 4401
    this.h = handlers;
    this.last = null;       // the cursor to resume with: of the last frame that carried one
    this.seen = new Map();  // partition → the highest offset seen there
    this.sources = new Map(); // src → the highest pos shown, least recently seen first
    this.lastSrc = null;      // the src of the last entry with one
    this.since = null;      // server_time of the first hello: where a live-only tail resumes before caught_up
    this.attempt = 0;
    this.ws = null;
    this.timer = 0;
    this.healthy = 0;
    this.stopped = false;
    this.usedToken = '';
    this.waitingForToken = false;
  }

  /** params are the query parameters of the next connect. */
  params() {
    const p = { job: this.jobs, grep: this.grep };
    const liveOnly = !('tail' in this.history) && !('since' in this.history);
    if (this.last !== null) p.cursor = this.last;
    else if (liveOnly && this.since !== null) p.since = this.since;
    else Object.assign(p, this.history);
    return p;
  }

  start() {
    this.stopped = false;
    this.waitingForToken = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.usedToken = this.token();
    const params = this.params();
    if (this.attempt === 0) this.emit('connecting');
    const ws = new WebSocket(tailURL(this.base, { ...params, token: this.usedToken }));
    this.ws = ws;
    let lastError = null;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      switch (f.type) {
        case 'hello':
          if (this.since === null && f.server_time) this.since = f.server_time;
          this.h.hello?.(f);
          this.emit('catching-up', { partition: f.partition });
          clearTimeout(this.healthy);
          this.healthy = setTimeout(() => { this.attempt = 0; }, HEALTHY_MS);
          break;
        case 'entries':
          this.onEntries(f.entries ?? []);
          this.cursor(f);
          break;
        case 'caught_up':
          // Everything up to the cursor has been sent: a reconnect resumes
          // after it even when none of it was this job's.
          this.cursor(f);
          this.attempt = 0;
          this.emit('live');
          break;
        case 'dropped':
          this.cursor(f);
          this.h.dropped?.(f);
          break;
        case 'error':
          lastError = f;
          break;
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.healthy);
      if (this.stopped) return;
      const code = ev.code || lastError?.code || 1006;
      const why = code === 1006 && !opened
        ? { action: 'retry', text: 'cannot reach livetail' }
        : closeAction(code);
      const reason = ev.reason || lastError?.reason || '';
      const text = why.text;
      if (why.action === 'retry') {
        this.retry(why.quick ? 'quick' : why.slow ? 'slow' : '', { text, reason, code });
      } else if (why.action === 'auth' && this.token() !== this.usedToken) {
        // The token was changed while this one was being refused: try it.
        this.retry('quick', { text, reason, code });
      } else if (why.action === 'auth' && this.freshToken && this.attempt === 0) {
        // Ask for a fresh token once, then resume with the cursor.
        this.attempt++;
        this.emit('reconnecting', { text, reason, code, delay: 0 });
        Promise.resolve().then(() => this.freshToken()).then((tok) => {
          if (this.stopped) return;
          if (tok && tok !== this.usedToken) {
            this.h.token?.(tok);
            this.connect();
          } else {
            this.waitingForToken = true;
            this.attempt = 0;
            this.emit('closed', { text, reason, code });
          }
        }, () => {
          this.waitingForToken = true;
          this.attempt = 0;
          this.emit('closed', { text, reason, code });
        });
      } else {
        this.waitingForToken = why.action === 'auth';
        this.attempt = 0;
        this.emit('closed', { text, reason, code });
      }
    };
  }

  onEntries(list) {
    const fresh = [];
    for (const e of list) {
      const p = e.partition ?? 0;
      const last = this.seen.get(p);
      if (last !== undefined && e.offset <= last) continue; // seen already
      this.seen.set(p, e.offset);
      if (this.resent(e)) continue;
      fresh.push(e);
    }
    if (fresh.length) this.h.entries(fresh);
  }

  /**
   * resent says whether e is a line of a source file at or below the
   * highest pos shown of it (a line sent again), and otherwise remembers
   * e's pos as that highest.
   */
  resent(e) {
    if (typeof e.src !== 'string' || !Number.isInteger(e.pos)) return false;
    const hi = this.sources.get(e.src);
    const dup = hi !== undefined && e.pos <= hi;
    if (e.src !== this.lastSrc) {
      // A Map keeps insertion order: the source seen last goes last.
      this.sources.delete(e.src);
      this.lastSrc = e.src;
    }
    this.sources.set(e.src, dup ? hi : e.pos);
    if (this.sources.size > MAX_SOURCES) this.sources.delete(this.sources.keys().next().value);
    return dup;
  }

  /**
   * position is, per partition, the last offset this Tail was given (the
   * cursor it would resume with), as a Map; empty before the first cursor.
   */
  position() {
    return typeof this.last === 'string' ? parseCursor(this.last) : new Map();
  }

  /** cursor keeps the cursor of frame f, or, from a server without cursors, its offset. */
  cursor(f) {
    if (typeof f.cursor === 'string' && f.cursor !== '') {
      this.last = f.cursor;
      return;
    }
    const off = f.type === 'dropped' ? f.to_offset
      : f.type === 'entries' ? f.entries?.at(-1)?.offset
      : f.offset;
    if (Number.isInteger(off) && off >= 0 && (this.last === null || typeof this.last !== 'number' || off > this.last)) this.last = off;
  }

  retry(speed, why) {
    this.attempt++;
    const delay = backoff(this.attempt, speed);
    this.emit('reconnecting', { ...why, delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** tokenChanged reconnects, with its cursor, a session that stopped on 4401. */
  tokenChanged() {
    if (this.waitingForToken && !this.stopped && this.token() !== this.usedToken) this.start();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.healthy);
    if (this.ws) {
      this.ws.close(1000);
      this.ws = null;
    }
    this.emit('closed', { text: 'disconnected', reason: '', code: 0 });
  }

  emit(state, extra = {}) {
    this.h.state({ state, attempt: this.attempt, ...extra });
  }
}
