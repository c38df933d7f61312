// The stream of lines on the page. Lines are queued as they arrive and
// rendered once per animation frame, as one DocumentFragment, so that
// thousands of lines a second cost one layout a frame. Rows are grouped in
// chunks of CHUNK rows, so that a frame lays out the chunks it changed and
// not every row on the page.
//
// Memory is bounded whatever the rate and the history loaded: at most
// maxLines rows (1,000 to 50,000; 10,000 by default) are kept, lines and
// notes alike, live or loaded with "load earlier"; older ones drop off the
// top and the count of those dropped is shown. While paused, at most
// maxLines more lines are held, and past that the oldest held are counted
// and dropped. "Load earlier" asks for no more than the room left under
// maxLines.

import { baseName, formatTime, jobHue, levelOf, markRanges, parseJSON } from './line.js';

const BOTTOM_SLACK = 24; // px from the bottom that still counts as "at the bottom"
const CHUNK = 250;       // rows per chunk element
const USER_SCROLL_MS = 600; // scroll events this soon after user input are the user's

/** item turns a wire entry into what a row needs; job is the stream's job for an entry that names none. */
function item(e, job) {
  const line = String(e.line ?? '');
  const json = parseJSON(line);
  const host = e.host ?? '';
  const file = e.file ?? '';
  return {
    kind: 'entry',
    job: typeof e.job === 'string' ? e.job : job,
    partition: e.partition ?? 0,
    offset: e.offset,
    ts: e.ts,
    line,
    json,
    level: levelOf(line, json),
    source: host && file ? `${host} ${baseName(file)}` : host || baseName(file),
    wire: e,
    pretty: null, // null: as the "pretty JSON" switch says
  };
}

/** append adds src's elements to dst (push(...src) fails for long arrays). */
function append(dst, src) {
  for (const x of src) dst.push(x);
}

/** titleOf says where a line comes from, for its tooltip. */
function titleOf(it) {
  const e = it.wire;
  const out = [`job ${it.job}`, `partition ${it.partition} offset ${e.offset}`, `time ${e.ts}`];
  if (e.host) out.push(`host ${e.host}`);
  if (e.file) out.push(`file ${e.file}`);
  if (e.labels && typeof e.labels === 'object') {
    for (const [k, v] of Object.entries(e.labels)) out.push(`${k}=${v}`);
  }
  return out.join('\n');
}

/**
 * fill writes text into el with the filter's matches wrapped in <mark> and
 * the highlight's in <mark class="hl">.
 */
export function fill(el, text, matcher, hl = null) {
  const ranges = markRanges(matcher ? matcher.ranges(text) : [], hl ? hl.ranges(text) : []);
  if (!ranges.length) {
    el.textContent = text;
    return;
  }
  el.textContent = '';
  let at = 0;
  for (const [start, end, kind] of ranges) {
    if (start > at) el.append(text.slice(at, start));
    const m = document.createElement('mark');
    if (kind === 'hl') m.className = 'hl';
    m.textContent = text.slice(start, end);
    el.append(m);
    at = end;
  }
  if (at < text.length) el.append(text.slice(at));
}

// ROW is the template every row is cloned from: time, job tag, source,
// message. The job tag is a button: a click shows that job's lines only.
const ROW = (() => {
  const row = document.createElement('div');
  row.className = 'row';
  const ts = document.createElement('time');
  ts.className = 'ts';
  const job = document.createElement('button');
  job.type = 'button';
  job.className = 'job';
  const src = document.createElement('span');
  src.className = 'src';
  const msg = document.createElement('span');
  msg.className = 'msg';
  row.append(ts, job, src, msg);
  return row;
})();

export class LogView {
  /**
   * el is the scrolling container; onChange is called (at most once a
   * frame) when counters or follow/pause change.
   */
  constructor(el, { maxLines = 10000, onChange = () => {} } = {}) {
    this.el = el;
    this.maxLines = maxLines;
    this.onChange = onChange;
    this.rows = [];       // {item, el}, oldest first
    this.pending = [];    // items waiting for the next frame
    this.held = [];       // items that arrived while paused
    this.heldLost = 0;    // items that did not fit in held
    this.paused = false;
    this.following = true;
    this.unseen = 0;      // rows added while not following
    this.matcher = null;  // the filter: hides what does not match
    this.hl = null;       // the highlight: marks, hides nothing
    this.only = '';       // a job whose lines alone show ('': all)
    this.job = '';        // the job of entries that name none
    this.matched = 0;     // entry rows that pass the filter
    this.dropped = 0;     // rows dropped off the top for the bound
    this.top = new Map(); // partition → the lowest offset held, or above the highest dropped
    this.prettyAll = false;
    this.frame = 0;
    this.items = new WeakMap(); // row element → item
    this.recheck = 0;

    // Only the user's scrolling starts or stops following: rows dropping
    // off the top and chunks drawn for the first time move the view too.
    this.userAt = -Infinity;  // when the user last wheeled, touched or typed here
    this.pointerDown = false; // dragging the scrollbar, say
    const intent = () => { this.userAt = performance.now(); };
    el.addEventListener('wheel', (ev) => {
      intent();
      if (ev.deltaY < 0) this.setFollowing(false);
    }, { passive: true });
    for (const type of ['touchstart', 'touchmove', 'keydown']) el.addEventListener(type, intent, { passive: true });
    el.addEventListener('pointerdown', () => { this.pointerDown = true; });
    addEventListener('pointerup', () => { this.pointerDown = false; });
    el.addEventListener('scroll', () => this.onScroll(), { passive: true });
    new ResizeObserver(() => { if (this.following) this.toBottom(); }).observe(el);
    // Where a line comes from shows on hover; it is written then, not for
    // every line.
    el.addEventListener('mouseover', (ev) => {
      const row = ev.target.closest?.('.row');
      const it = row && this.items.get(row);
      if (it && !row.title) row.title = titleOf(it);
    });
  }

  /** add queues wire entries. */
  add(entries) {
    this.queue(entries.map((e) => item(e, this.job)));
  }

  /** room is how many more rows fit under the bound. */
  room() {
    return Math.max(0, this.maxLines - this.rows.length - this.pending.length);
  }

  /**
   * prepend puts older wire entries (a "load earlier" page, oldest first),
   * and the notes (text, above them), at the top, keeping the lines in view
   * where they are. When they do not all fit under the bound (lines came
   * meanwhile), the oldest entries and the notes are left out: it returns
   * false then.
   */
  prepend(entries, notes = []) {
    let items = [...notes.map((text) => ({ kind: 'marker', text, title: '' })), ...entries.map((e) => item(e, this.job))];
    const room = Math.max(0, this.maxLines - this.rows.length);
    const whole = items.length <= room;
    if (!whole) items = room ? items.slice(notes.length).slice(-room) : [];
    if (!items.length) return whole;
    const chunk = document.createElement('div');
    chunk.className = 'chunk';
    const rows = items.map((it) => {
      const el = this.render(it);
      chunk.append(el);
      if (it.kind === 'entry') {
        if (!el.hidden) this.matched++;
        const t = this.top.get(it.partition);
        if (t === undefined || it.offset < t) this.top.set(it.partition, it.offset);
      }
      return { item: it, el };
    });
    const { scrollHeight, scrollTop } = this.el;
    this.el.prepend(chunk);
    this.rows.unshift(...rows);
    if (this.following) this.setFollowing(false);
    this.el.scrollTop = scrollTop + (this.el.scrollHeight - scrollHeight);
    this.onChange();
    return whole;
  }

  /** marker queues a notice row, such as skipped lines. */
  marker(text, title = '') {
    this.queue([{ kind: 'marker', text, title }]);
  }

  queue(items) {
    if (this.paused) {
      append(this.held, items);
      const extra = this.held.length - this.maxLines;
      if (extra > 0) {
        this.passed(this.held.splice(0, extra));
        this.heldLost += extra;
      }
      this.changed();
      return;
    }
    append(this.pending, items);
    // Rows beyond maxLines would drop off as soon as they are drawn (a
    // hidden tab gets no frames): do not keep them.
    const extra = this.pending.length - this.maxLines;
    if (extra > 0) {
      this.passed(this.pending.splice(0, extra));
      this.dropped += extra;
    }
    this.schedule();
  }

  /**
   * passed notes items dropped for the bound: the page's first position
   * (top) of their partitions moves above them, so that "load earlier"
   * loads them again rather than leave a gap.
   */
  passed(items) {
    for (const it of items) {
      if (it.kind === 'entry') this.top.set(it.partition, Math.max(this.top.get(it.partition) ?? -Infinity, it.offset + 1));
    }
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const items = this.pending;
    if (!items.length) return;
    this.pending = [];
    let chunk = this.el.lastElementChild;
    let room = chunk ? CHUNK - chunk.childElementCount : 0;
    let frag = document.createDocumentFragment();
    let visible = 0;
    for (const it of items) {
      if (room === 0) {
        if (chunk) chunk.append(frag);
        chunk = document.createElement('div');
        chunk.className = 'chunk';
        this.el.append(chunk);
        frag = document.createDocumentFragment();
        room = CHUNK;
      }
      const el = this.render(it);
      frag.append(el);
      room--;
      this.rows.push({ item: it, el });
      if (it.kind === 'entry' && !this.top.has(it.partition)) this.top.set(it.partition, it.offset);
      if (it.kind === 'entry' && !el.hidden) {
        this.matched++;
        visible++;
      }
    }
    chunk.append(frag);
    this.trim();
    if (this.following) this.toBottom();
    else this.unseen += visible;
    this.onChange();
  }

  trim() {
    const extra = this.rows.length - this.maxLines;
    if (extra <= 0) return;
    const gone = this.rows.splice(0, extra);
    const r = document.createRange();
    r.setStartBefore(gone[0].el);
    r.setEndAfter(gone[gone.length - 1].el);
    r.deleteContents(); // whole chunks, and rows of the chunks at the ends
    while (this.el.firstElementChild && !this.el.firstElementChild.childElementCount) {
      this.el.firstElementChild.remove();
    }
    for (const g of gone) if (g.item.kind === 'entry' && !g.el.hidden) this.matched--;
    this.passed(gone.map((g) => g.item));
    this.dropped += extra;
  }

  render(it) {
    if (it.kind === 'marker') {
      const m = document.createElement('div');
      m.className = 'marker';
      m.setAttribute('role', 'note');
      m.textContent = it.text;
      if (it.title) m.title = it.title;
      return m;
    }
    const row = ROW.cloneNode(true);
    if (it.level) row.className = `row lvl-${it.level}`;
    if (it.json) row.classList.add('is-json');
    row.dataset.offset = it.offset;
    row.dataset.partition = it.partition;
    row.dataset.job = it.job;
    const ts = row.firstChild;
    ts.dateTime = it.ts;
    ts.textContent = formatTime(it.ts);
    const tag = ts.nextSibling;
    tag.textContent = it.job;
    tag.style.setProperty('--hue', jobHue(it.job));
    tag.title = `Show only job ${it.job}`;
    if (it.source) tag.nextSibling.textContent = it.source;
    this.items.set(row, it);
    this.paint(row, it);
    return row;
  }

  /** paint (re)writes a row's message, highlight and visibility for the filter and the job shown. */
  paint(row, it) {
    const msg = row.children[3];
    const pretty = it.json && (it.pretty ?? this.prettyAll);
    if (it.json) row.classList.toggle('pretty', !!pretty);
    fill(msg, pretty ? JSON.stringify(it.json, null, 2) : it.line, this.matcher, this.hl);
    const lit = !!this.hl && this.hl.test(it.line);
    if (lit || row.classList.contains('lit')) row.classList.toggle('lit', lit);
    const hide = (this.matcher && !this.matcher.test(it.line)) || (this.only !== '' && it.job !== this.only);
    if (hide || row.hidden) row.hidden = !!hide;
  }

  /** setHighlight marks a matcher's matches (or none) in every row, hiding nothing. */
  setHighlight(hl) {
    this.hl = hl;
    this.repaint();
  }

  /** setOnly shows the lines of one job alone ('': every job's). */
  setOnly(job) {
    this.only = job;
    this.repaint();
  }

  /** setFilter applies a matcher (or null) to every row. */
  setFilter(matcher) {
    this.matcher = matcher;
    this.repaint();
  }

  repaint() {
    this.matched = 0;
    for (const { item: it, el } of this.rows) {
      if (it.kind !== 'entry') continue;
      this.paint(el, it);
      if (!el.hidden) this.matched++;
    }
    if (this.following) this.toBottom();
    this.onChange();
  }

  /** setPrettyAll switches every JSON row, forgetting per-row choices. */
  setPrettyAll(on) {
    this.prettyAll = on;
    for (const { item: it, el } of this.rows) {
      if (!it.json) continue;
      it.pretty = null;
      this.paint(el, it);
    }
    if (this.following) this.toBottom();
  }

  /** togglePretty flips one row between its raw and pretty-printed JSON. */
  togglePretty(rowEl) {
    const it = this.items.get(rowEl);
    if (!it?.json) return false;
    it.pretty = !(it.pretty ?? this.prettyAll);
    this.paint(rowEl, it);
    if (this.following) this.toBottom();
    return it.pretty;
  }

  /** itemOf returns what the row element shows: job, partition, offset, ts, line. */
  itemOf(rowEl) {
    return this.items.get(rowEl) ?? null;
  }

  /** lineOf returns the text of the row element, for copying. */
  lineOf(rowEl) {
    return this.items.get(rowEl)?.line ?? '';
  }

  /** visibleText is the lines that pass the filter, one per line. */
  visibleText(withTime) {
    const out = [];
    for (const { item: it, el } of this.rows) {
      if (el.hidden) continue;
      if (it.kind === 'marker') out.push(`# ${it.text}`);
      else out.push(withTime ? `${it.ts} ${it.line}` : it.line);
    }
    return out.length ? out.join('\n') + '\n' : '';
  }

  setMaxLines(n) {
    this.maxLines = n;
    this.trim();
    this.onChange();
  }

  pause() {
    if (this.paused) return;
    this.paused = true;
    // Lines not drawn yet stay hidden with the ones to come.
    this.held = this.pending;
    this.pending = [];
    this.changed();
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    const held = this.held;
    this.held = [];
    if (this.heldLost) {
      this.pending.push({
        kind: 'marker',
        text: `${this.heldLost} older lines were not kept while paused (limit ${this.maxLines})`,
      });
      this.heldLost = 0;
    }
    append(this.pending, held);
    this.follow();
    this.schedule();
    this.changed();
  }

  clear() {
    this.rows = [];
    this.top = new Map();
    this.dropped = 0;
    this.pending = [];
    this.held = [];
    this.heldLost = 0;
    this.unseen = 0;
    this.matched = 0;
    this.el.replaceChildren();
    this.changed();
  }

  /** follow sticks to the bottom again. */
  follow() {
    this.setFollowing(true);
    this.toBottom();
  }

  setFollowing(on) {
    if (this.following === on) return;
    this.following = on;
    if (on) this.unseen = 0;
    this.changed();
  }

  toBottom() {
    this.el.scrollTop = this.el.scrollHeight;
    if (!this.recheck) this.recheck = requestAnimationFrame(() => this.settle(5));
  }

  /**
   * settle keeps a following view at the bottom for a few frames: chunks
   * drawn for the first time may turn out taller than their estimate.
   */
  settle(frames) {
    this.recheck = 0;
    if (!this.following) return;
    const { scrollTop, scrollHeight, clientHeight } = this.el;
    if (scrollHeight - scrollTop - clientHeight > 1) {
      this.el.scrollTop = scrollHeight;
      if (frames > 1) this.recheck = requestAnimationFrame(() => this.settle(frames - 1));
    }
  }

  /**
   * onScroll follows the user: scrolling up stops following, scrolling to
   * the bottom starts it again. Any other move of a following view (rows
   * that grew below it, say) puts it back at the bottom.
   */
  onScroll() {
    const { scrollTop, scrollHeight, clientHeight } = this.el;
    const atBottom = scrollHeight - scrollTop - clientHeight <= BOTTOM_SLACK;
    if (this.pointerDown || performance.now() - this.userAt < USER_SCROLL_MS) this.setFollowing(atBottom);
    else if (this.following && !atBottom) this.toBottom();
  }

  changed() {
    this.onChange();
  }
}
