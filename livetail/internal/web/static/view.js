// The stream of lines on the page. Lines are queued as they arrive and
// rendered once per animation frame, as one DocumentFragment, so that
// thousands of lines a second cost one layout a frame. Rows are grouped in
// chunks of CHUNK rows, so that a frame lays out the chunks it changed and
// not every row on the page. At most maxLines rows stay in the page: older
// ones drop off the top.

import { baseName, formatTime, levelOf, parseJSON } from './line.js';

const BOTTOM_SLACK = 24; // px from the bottom that still counts as "at the bottom"
const CHUNK = 250;       // rows per chunk element
const USER_SCROLL_MS = 600; // scroll events this soon after user input are the user's

/** item turns a wire entry into what a row needs. */
function item(e) {
  const line = String(e.line ?? '');
  const json = parseJSON(line);
  const host = e.host ?? '';
  const file = e.file ?? '';
  return {
    kind: 'entry',
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
  const out = [`offset ${e.offset}`, `time ${e.ts}`];
  if (e.host) out.push(`host ${e.host}`);
  if (e.file) out.push(`file ${e.file}`);
  if (e.labels && typeof e.labels === 'object') {
    for (const [k, v] of Object.entries(e.labels)) out.push(`${k}=${v}`);
  }
  return out.join('\n');
}

/** fill writes text into el with the matcher's matches wrapped in <mark>. */
function fill(el, text, matcher) {
  const ranges = matcher ? matcher.ranges(text) : [];
  if (!ranges.length) {
    el.textContent = text;
    return;
  }
  el.textContent = '';
  let at = 0;
  for (const [start, end] of ranges) {
    if (start > at) el.append(text.slice(at, start));
    const m = document.createElement('mark');
    m.textContent = text.slice(start, end);
    el.append(m);
    at = end;
  }
  if (at < text.length) el.append(text.slice(at));
}

// ROW is the template every row is cloned from: time, source, message.
const ROW = (() => {
  const row = document.createElement('div');
  row.className = 'row';
  const ts = document.createElement('time');
  ts.className = 'ts';
  const src = document.createElement('span');
  src.className = 'src';
  const msg = document.createElement('span');
  msg.className = 'msg';
  row.append(ts, src, msg);
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
    this.matcher = null;
    this.matched = 0;     // entry rows that pass the filter
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
    this.queue(entries.map(item));
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
        this.held.splice(0, extra);
        this.heldLost += extra;
      }
      this.changed();
      return;
    }
    append(this.pending, items);
    // Rows beyond maxLines would drop off as soon as they are drawn (a
    // hidden tab gets no frames): do not keep them.
    const extra = this.pending.length - this.maxLines;
    if (extra > 0) this.pending.splice(0, extra);
    this.schedule();
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
    const ts = row.firstChild;
    ts.dateTime = it.ts;
    ts.textContent = formatTime(it.ts);
    if (it.source) ts.nextSibling.textContent = it.source;
    this.items.set(row, it);
    this.paint(row, it);
    return row;
  }

  /** paint (re)writes a row's message and visibility for the filter. */
  paint(row, it) {
    const msg = row.children[2];
    const pretty = it.json && (it.pretty ?? this.prettyAll);
    if (it.json) row.classList.toggle('pretty', !!pretty);
    fill(msg, pretty ? JSON.stringify(it.json, null, 2) : it.line, this.matcher);
    if (this.matcher) row.hidden = !this.matcher.test(it.line);
    else if (row.hidden) row.hidden = false;
  }

  /** setFilter applies a matcher (or null) to every row. */
  setFilter(matcher) {
    this.matcher = matcher;
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
