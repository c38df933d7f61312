// Pure helpers for one log line: JSON detection, level detection, time
// formatting and the client-side filter. Nothing here touches the DOM.

const LEVELS = new Map([
  ['fatal', 'fatal'], ['panic', 'fatal'], ['emerg', 'fatal'], ['emergency', 'fatal'],
  ['alert', 'fatal'], ['crit', 'fatal'], ['critical', 'fatal'], ['severe', 'fatal'],
  ['error', 'error'], ['err', 'error'], ['eror', 'error'],
  ['warning', 'warn'], ['warn', 'warn'], ['wrn', 'warn'],
  ['notice', 'info'], ['info', 'info'], ['inf', 'info'], ['information', 'info'],
  ['debug', 'debug'], ['dbg', 'debug'],
  ['trace', 'trace'], ['trc', 'trace'], ['verbose', 'trace'],
]);

// Keys that JSON loggers use for the level (zap, logrus, pino, bunyan, ECS,
// Python's logging, serilog).
const JSON_KEYS = ['level', 'lvl', 'severity', 'loglevel', 'log_level', 'levelname', 'log.level', '@l'];

// pino and bunyan write numeric levels.
const NUMERIC = [[60, 'fatal'], [50, 'error'], [40, 'warn'], [30, 'info'], [20, 'debug'], [0, 'trace']];

// level=warn, lvl: info, "severity":"ERROR"
const KV = /\b(?:level|lvl|severity)["']?\s*[=:]\s*["']?([A-Za-z]+)/i;
// WARN, ERROR, FATAL … as a whole upper-case word
const UPPER = /\b(FATAL|PANIC|EMERG(?:ENCY)?|CRIT(?:ICAL)?|SEVERE|ERROR|ERR|EROR|WARNING|WARN|WRN|NOTICE|INFO|INF|DEBUG|DBG|TRACE|TRC)\b/;
// [error], <warn>, (info), |debug|, error:
const BRACKET = /(?:^|[[<(|])(fatal|panic|crit(?:ical)?|error|err|warn(?:ing)?|info|notice|debug|trace)(?:[\]>)|]|:\s)/i;
// glog / klog: E0102 15:04:05.000000 …
const GLOG = /^([IWEF])\d{4} \d\d:\d\d/;
const GLOG_LEVELS = { I: 'info', W: 'warn', E: 'error', F: 'fatal' };

// The first characters are where loggers put the level; looking further
// finds words inside messages ("retrying after ERROR from upstream").
const HEAD = 200;

/** parseJSON returns the object a line holds, or null if it is not one. */
export function parseJSON(line) {
  const s = line.trim();
  if (s.length < 2 || s[0] !== '{' || s[s.length - 1] !== '}') return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function levelName(v) {
  if (typeof v === 'number') {
    for (const [min, name] of NUMERIC) if (v >= min) return name;
    return 'trace';
  }
  if (typeof v === 'string') return LEVELS.get(v.trim().toLowerCase()) ?? '';
  return '';
}

/**
 * levelOf returns the line's level as one of fatal, error, warn, info,
 * debug, trace, or '' when the line does not say.
 */
export function levelOf(line, json) {
  if (json) {
    for (const k of JSON_KEYS) {
      const l = levelName(k === 'log.level' && json[k] === undefined ? json.log?.level : json[k]);
      if (l) return l;
    }
  }
  const head = line.length > HEAD ? line.slice(0, HEAD) : line;
  let m = GLOG.exec(head);
  if (m) return GLOG_LEVELS[m[1]];
  m = KV.exec(head);
  if (m) {
    const l = LEVELS.get(m[1].toLowerCase());
    if (l) return l;
  }
  m = UPPER.exec(head);
  if (m) return LEVELS.get(m[1].toLowerCase());
  m = BRACKET.exec(head);
  if (m) return LEVELS.get(m[1].toLowerCase()) ?? '';
  return '';
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** formatTime renders an RFC 3339 time as local HH:MM:SS.mmm. */
export function formatTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts ?? '');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** baseName is the last element of a file path. */
export function baseName(path) {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i >= 0 ? path.slice(i + 1) : path;
}

/**
 * makeMatcher builds the client-side filter: a case-insensitive substring,
 * or a JavaScript regular expression when regex is set. It returns null for
 * an empty query and throws SyntaxError for a bad expression.
 */
export function makeMatcher(query, { regex = false, matchCase = false } = {}) {
  if (!query) return null;
  const source = regex ? query : query.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const flags = matchCase ? 'g' : 'gi';
  const re = new RegExp(source, flags);
  const test = new RegExp(source, flags.replace('g', ''));
  return {
    test: (s) => test.test(s),
    /** ranges returns [start, end) pairs of the matches in s. */
    ranges(s) {
      const out = [];
      re.lastIndex = 0;
      for (let m = re.exec(s); m; m = re.exec(s)) {
        if (m[0].length === 0) {
          re.lastIndex++; // an empty match highlights nothing; move on
          continue;
        }
        out.push([m.index, m.index + m[0].length]);
        if (out.length >= 1000) break;
      }
      return out;
    },
  };
}

/**
 * jobHue gives a job a colour of its own, as a hue (0–359) from a hash of
 * its name: the same job has the same colour on every page.
 */
export function jobHue(job) {
  let h = 2166136261;
  for (let i = 0; i < job.length; i++) {
    h ^= job.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}

/**
 * markRanges merges the filter's ranges and the highlight's into one list
 * of [start, end, kind] in order, kind 'filter' or 'hl'; where they
 * overlap, the range that starts first wins.
 */
export function markRanges(filter, hl) {
  const all = [...filter.map(([s, e]) => [s, e, 'filter']), ...hl.map(([s, e]) => [s, e, 'hl'])];
  if (!hl.length || !filter.length) return all;
  all.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const out = [];
  let at = 0;
  for (const r of all) {
    if (r[0] < at) continue;
    out.push(r);
    at = r[1];
  }
  return out;
}

/**
 * parseJobs reads a list of jobs typed as "a, b c": names separated by
 * commas or white space, each once, in the order given.
 */
export function parseJobs(text) {
  const out = [];
  for (const j of String(text).split(/[\s,]+/)) if (j && !out.includes(j)) out.push(j);
  return out;
}
