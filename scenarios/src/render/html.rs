//! The HTML report: one self-contained file (no network, no external script, style or font)
//! with the whole run's [`timeline`] — zoom with the wheel or the buttons, pan
//! by dragging, hover or click an event for its instruction, bytes, store epochs (each with the
//! store it came from), operation and kernel statement — then the violating fetch byte by byte and
//! the store history of every patched byte: its stores in order and which of them each vCPU's
//! fetches saw.
//!
//! Hooks for tests and scripts: `<body data-ready="1">` once the script has run,
//! `data-errors` on `<body>` if a script error happened, one `.lane` per vCPU plus the
//! patcher, `.violation` on the violating event.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use super::timeline::{self, mark_class, phase_color, Layout};
use super::{bytes_with_epochs, escape, label, Run};

/// The report of `run`.
pub fn render(run: &Run) -> String {
    let mut s = String::with_capacity(64 * 1024 + run.events.len() * 256);
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>pokesim: {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        escape(&run.title)
    );
    header(run, &mut s);
    legend(run, &mut s);
    s.push_str("<div id=\"timeline-box\">\n");
    s.push_str(&timeline::render(run, Layout::whole(run)));
    s.push_str("</div>\n<div id=\"tooltip\" hidden></div>\n");
    s.push_str(
        "<section id=\"details\"><h2>Event</h2><p class=\"hint\">Click an event in the timeline.</p></section>\n",
    );
    torn(run, &mut s);
    history(run, &mut s);
    data(run, &mut s);
    let _ = writeln!(s, "<script>{SCRIPT}</script>\n</body>\n</html>");
    s
}

fn header(run: &Run, s: &mut String) {
    let _ = writeln!(s, "<header><h1>{}</h1>", escape(&run.title));
    match &run.violation {
        Some(v) => {
            let _ = writeln!(s, "<p class=\"verdict bad\">{}</p>", escape(&v.to_string()));
        }
        None => s.push_str("<p class=\"verdict ok\">No violation.</p>\n"),
    }
    let sites: Vec<String> = run.sites.iter().map(|x| format!("{} = {:#x}+{}", x.name, x.addr, x.len)).collect();
    let _ = writeln!(
        s,
        "<p>{} events · {} stores · sites: {}</p>",
        run.events.len(),
        run.stores.len(),
        escape(&sites.join(", "))
    );
    s.push_str(
        "<nav id=\"controls\"><button id=\"zoom-in\">zoom in</button> <button id=\"zoom-out\">zoom out</button> \
         <button id=\"whole\">whole run</button> <button id=\"to-violation\">violation</button> \
         <span class=\"hint\">wheel: zoom · drag: pan · hover or click an event: details</span> \
         <span id=\"range\"></span></nav>\n</header>\n",
    );
}

fn legend(run: &Run, s: &mut String) {
    s.push_str("<div id=\"legend\">");
    for (class, what) in timeline::LEGEND {
        let _ = write!(s, "<span><svg width=\"10\" height=\"10\"><rect class=\"ev {class}\" width=\"10\" height=\"10\"/></svg> {}</span>", escape(what));
    }
    for phase in timeline::LEGEND_PHASES {
        let _ =
            write!(s, "<span><i class=\"band-swatch\" style=\"background:{}\"></i> {phase}</span>", phase_color(phase));
    }
    s.push_str("<span><i class=\"run-swatch\"></i> INT3 handler run</span></div>\n");
    changes(run, s);
}

/// What the mutants changed: one line each, the struck-out step's swatch before the lines of
/// operations the timeline marks, a hollow one before the others.
fn changes(run: &Run, s: &mut String) {
    if run.changes.is_empty() {
        return;
    }
    s.push_str("<ul id=\"changes\">");
    for (i, (line, marked)) in run.change_lines().iter().enumerate() {
        let swatch = if *marked { "removed-swatch" } else { "unmarked-swatch" };
        let _ = write!(s, "<li class=\"change\" data-change=\"{i}\"><i class=\"{swatch}\"></i> {}</li>", escape(line));
    }
    s.push_str("</ul>\n");
}

/// The violating fetch, byte by byte, each with the store it came from.
fn torn(run: &Run, s: &mut String) {
    let Some(v) = &run.violation else { return };
    let (bytes, decoded) = run.torn();
    let _ = writeln!(s, "<section id=\"torn\"><h2>The violation</h2><p>{}</p>", escape(&v.message));
    if bytes.is_empty() {
        s.push_str("</section>\n");
        return;
    }
    let cpu = v.cpu.map_or("a vCPU".to_string(), |c| format!("cpu{c}"));
    let _ = writeln!(
        s,
        "<p>{cpu} fetched <code>{}</code> at {} and decoded it as the CPU would: <code>{}</code></p>",
        bytes.iter().map(|b| format!("{:02x}", b.1)).collect::<Vec<_>>().join(" "),
        escape(&run.place(bytes[0].0)),
        escape(&decoded)
    );
    s.push_str("<table><tr><th>byte</th><th>value</th><th>epoch</th><th>came from</th></tr>\n");
    for (addr, byte, epoch) in bytes {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><code>{byte:02x}</code></td><td>{epoch}</td><td>{}</td></tr>",
            escape(&run.place(addr)),
            escape(&run.origin(epoch))
        );
    }
    s.push_str("</table></section>\n");
}

/// For one byte: `epoch -> fetches` per vCPU.
type Seen = Vec<BTreeMap<u32, u64>>;

/// Which epochs of each site byte each vCPU's fetches saw.
fn seen(run: &Run) -> BTreeMap<u64, Seen> {
    let mut out: BTreeMap<u64, Seen> = BTreeMap::new();
    for e in run.events.iter().filter(|e| e.cpu.is_some() && e.insn.is_some()) {
        let (Some(cpu), Some(rip)) = (e.cpu, e.rip) else { continue };
        for (k, epoch) in e.epochs.iter().enumerate() {
            let addr = rip + k as u64;
            if run.site_of(addr).is_some() {
                let per = out.entry(addr).or_insert_with(|| vec![BTreeMap::new(); run.cpus]);
                *per[cpu].entry(*epoch).or_insert(0) += 1;
            }
        }
    }
    out
}

/// The store history of every patched byte.
fn history(run: &Run, s: &mut String) {
    s.push_str("<section id=\"history\"><h2>Store history of the patched sites</h2>\n");
    s.push_str("<p class=\"hint\">Each byte's stores in order (<code>value@epoch</code>; epoch 0 is the initial text), then the epochs each vCPU's fetches of that byte saw, with how many fetches. <b>Outlined</b>: what the violating fetch saw.</p>\n");
    let seen = seen(run);
    let (torn, _) = run.torn();
    let bad_cpu = run.violation.as_ref().and_then(|v| v.cpu);
    let _ = write!(s, "<table><tr><th>byte</th><th>stores</th>");
    for c in 0..run.cpus {
        let _ = write!(s, "<th>cpu{c} saw</th>");
    }
    s.push_str("</tr>\n");
    for &(addr, initial) in &run.initial {
        let _ = write!(s, "<tr data-addr=\"{addr:#x}\"><td>{}</td><td>", escape(&run.place(addr)));
        let torn_epoch = torn.iter().find(|t| t.0 == addr).map(|t| t.2);
        let chip = |value: u8, epoch: u32, title: String| {
            let class = if torn_epoch == Some(epoch) { "chip torn" } else { "chip" };
            format!("<span class=\"{class}\" title=\"{}\">{value:02x}@{epoch}</span>", escape(&title))
        };
        s.push_str(&chip(initial, 0, run.origin(0)));
        for st in run.stores.iter().filter(|st| addr >= st.addr && addr < st.addr + st.bytes.len() as u64) {
            s.push_str(&chip(st.bytes[(addr - st.addr) as usize], st.epoch, run.origin(st.epoch)));
        }
        s.push_str("</td>");
        for c in 0..run.cpus {
            s.push_str("<td>");
            for (epoch, n) in seen.get(&addr).map(|per| per[c].clone()).unwrap_or_default() {
                let class = if bad_cpu == Some(c) && torn_epoch == Some(epoch) { "seen torn" } else { "seen" };
                let _ = write!(s, "<span class=\"{class}\">@{epoch}×{n}</span> ");
            }
            s.push_str("</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table></section>\n");
}

/// The events as JSON rows (the marks' `data-i` index them) and each store's origin.
fn data(run: &Run, s: &mut String) {
    let rows: Vec<_> = run
        .events
        .iter()
        .map(|e| {
            json!([
                e.tick,
                e.actor,
                mark_class(run, e),
                label(e),
                e.rip.map_or(String::new(), |r| run.place(r)),
                e.insn,
                bytes_with_epochs(e),
                e.round,
                e.op_name(),
                e.kernel,
                e.sync
            ])
        })
        .collect();
    let origins: Vec<String> = (0..=run.stores.len() as u32).map(|ep| run.origin(ep)).collect();
    let violation = run.violation.as_ref().map(|v| json!({"tick": v.tick, "text": v.to_string()}));
    let doc = json!({
        "fields": ["tick", "actor", "class", "event", "where", "instruction", "bytes", "round", "phase", "kernel", "sync"],
        "rows": rows,
        "origins": origins,
        "violation": violation,
    });
    // `</` would end the script element; `<\/` is the same JSON string.
    let text = serde_json::to_string(&doc).unwrap_or_default().replace("</", "<\\/");
    let _ = writeln!(s, "<script type=\"application/json\" id=\"events\">{text}</script>");
}

const CSS: &str = r#"
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 16px; color: #212121; }
h1 { font-size: 18px; margin: 0 0 4px 0; } h2 { font-size: 15px; margin: 18px 0 6px 0; }
code, .chip, .seen, #details dd, #tooltip { font-family: DejaVu Sans Mono, monospace; }
.verdict.bad { color: #b71c1c; font-weight: bold; } .verdict.ok { color: #1b5e20; font-weight: bold; }
.hint { color: #757575; font-size: 12px; }
#controls button { font-size: 12px; }
#range { margin-left: 12px; font-size: 12px; color: #424242; }
#legend { font-size: 12px; margin: 6px 0; } #legend span { margin-right: 12px; white-space: nowrap; }
.band-swatch, .run-swatch { display: inline-block; width: 10px; height: 10px; opacity: 0.5; }
.run-swatch { background: #ffb74d; opacity: 1; }
#changes { list-style: none; margin: 4px 0; padding: 0; font-size: 12px; }
.removed-swatch { display: inline-block; width: 10px; height: 10px; background: #ff00ff; }
.unmarked-swatch { display: inline-block; width: 8px; height: 8px; border: 1px solid #9e9e9e; }
#timeline { display: block; max-width: 100%; height: auto; }
#timeline-box { border: 1px solid #e0e0e0; overflow-x: auto; user-select: none; cursor: grab; }
#timeline-box.dragging { cursor: grabbing; }
#tooltip { position: fixed; pointer-events: none; background: #263238; color: #fff; padding: 6px 8px;
  font-size: 11px; max-width: 720px; white-space: pre-wrap; border-radius: 3px; z-index: 10; }
.ev.picked { stroke: #000; stroke-width: 2px; }
#details dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 12px; }
#details dt { font-weight: bold; } #details dd { margin: 0; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #e0e0e0; padding: 2px 6px; text-align: left; vertical-align: top; }
.chip, .seen { display: inline-block; padding: 0 3px; margin: 1px; background: #eceff1; border-radius: 2px; }
.torn { outline: 2px solid #d50000; background: #ffebee; }
"#;

const SCRIPT: &str = r#"
(function () {
  'use strict';
  var body = document.body;
  function fail(msg) { body.setAttribute('data-errors', (body.getAttribute('data-errors') || '') + msg + ';'); }
  window.addEventListener('error', function (e) { fail(e.message); });
  try {
    var NS = 'http://www.w3.org/2000/svg';
    var data = JSON.parse(document.getElementById('events').textContent);
    var svg = document.getElementById('timeline'), plot = document.getElementById('plot');
    var labels = document.getElementById('labels'), axis = document.getElementById('axis');
    var box = document.getElementById('timeline-box'), tip = document.getElementById('tooltip');
    var lo = +svg.getAttribute('data-lo'), hi = +svg.getAttribute('data-hi');
    var px = +svg.getAttribute('data-px'), left = +svg.getAttribute('data-left');
    var width = +svg.getAttribute('width'), plotW = +svg.getAttribute('data-plot-width');
    var top = +svg.getAttribute('data-top'), rowY = [top - 4, top - 15];
    var axisY = +(axis.firstElementChild ? axis.firstElementChild.getAttribute('y') : 0);
    var maxZoom = Math.max(1, plotW / (8 * px)), zoom = 1, off = 0;
    var moving = Array.prototype.slice.call(labels.querySelectorAll('[data-x]')).filter(function (t) { return t.parentNode !== axis; });
    function screenX(u) { return left + (u - left) * zoom - off; }
    function tickAt(x) { return lo + (x - left + off) / (px * zoom); }
    function drawAxis() {
      while (axis.firstChild) axis.removeChild(axis.firstChild);
      var t0 = Math.max(lo, Math.floor(tickAt(left))), t1 = Math.min(hi, Math.ceil(tickAt(left + plotW)));
      var steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
      var step = steps.find(function (s) { return s * px * zoom >= 60; }) || 200000;
      for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
        var el = document.createElementNS(NS, 'text');
        el.setAttribute('class', 'axis-label'); el.setAttribute('y', axisY);
        el.setAttribute('x', screenX(left + (t - lo) * px)); el.textContent = t;
        axis.appendChild(el);
      }
      document.getElementById('range').textContent = 'ticks ' + t0 + '..' + t1 + ' of ' + lo + '..' + hi;
    }
    function apply() {
      zoom = Math.min(Math.max(zoom, 1), maxZoom);
      off = Math.min(Math.max(off, 0), plotW * (zoom - 1));
      plot.setAttribute('transform', 'translate(' + (left - off - left * zoom) + ',0) scale(' + zoom + ',1)');
      var rows = [-Infinity, -Infinity];
      moving.forEach(function (t) {
        var x = screenX(+t.getAttribute('data-x'));
        t.setAttribute('x', x);
        if (t.getAttribute('class') !== 'band-label') return;
        var row = x >= rows[0] ? 0 : x >= rows[1] ? 1 : -1;
        var show = row >= 0 && x < left + plotW;
        t.setAttribute('visibility', show ? 'visible' : 'hidden');
        if (show) { t.setAttribute('y', rowY[row]); rows[row] = x + 6.6 * t.textContent.length + 6; }
      });
      drawAxis();
    }
    function zoomAt(x, factor) {
      var u = (x - left + off) / zoom;
      zoom = Math.min(Math.max(zoom * factor, 1), maxZoom);
      off = u * zoom - (x - left);
      apply();
    }
    function show(tick, span) {
      zoom = Math.min(Math.max(plotW / (span * px), 1), maxZoom);
      off = (tick - lo) * px * zoom - plotW / 2;
      apply();
    }
    function svgX(clientX) {
      var r = svg.getBoundingClientRect();
      return (clientX - r.left) * width / r.width;
    }
    svg.addEventListener('wheel', function (e) { e.preventDefault(); zoomAt(svgX(e.clientX), e.deltaY < 0 ? 1.25 : 0.8); }, { passive: false });
    var drag = null;
    svg.addEventListener('mousedown', function (e) { drag = { x: e.clientX, off: off, moved: false }; box.classList.add('dragging'); });
    window.addEventListener('mouseup', function () { box.classList.remove('dragging'); setTimeout(function () { drag = null; }, 0); });
    window.addEventListener('mousemove', function (e) {
      if (drag && e.buttons) { var dx = svgX(e.clientX) - svgX(drag.x); if (Math.abs(dx) > 2) drag.moved = true; off = drag.off - dx; apply(); }
    });
    document.getElementById('zoom-in').onclick = function () { zoomAt(left + plotW / 2, 2); };
    document.getElementById('zoom-out').onclick = function () { zoomAt(left + plotW / 2, 0.5); };
    document.getElementById('whole').onclick = function () { zoom = 1; off = 0; apply(); };
    document.getElementById('to-violation').onclick = function () { if (data.violation) show(data.violation.tick, 100); };
    var F = {}; data.fields.forEach(function (f, i) { F[f] = i; });
    function describe(row) {
      var lines = ['tick ' + row[F.tick] + '  ' + row[F.actor] + '  ' + row[F.event] + (row[F.where] ? '  at ' + row[F.where] : '')];
      if (row[F.instruction]) lines.push('instruction  ' + row[F.instruction]);
      if (row[F.bytes]) lines.push('bytes@epoch  ' + row[F.bytes]);
      var round = row[F.round];
      lines.push((typeof round === 'number' ? 'round ' + round : round) + ', patcher phase: ' + row[F.phase]);
      if (row[F.kernel]) lines.push('kernel       ' + row[F.kernel]);
      return lines.join('\n');
    }
    svg.addEventListener('mousemove', function (e) {
      var i = e.target.getAttribute('data-i');
      if (i === null || (drag && drag.moved)) { tip.hidden = true; return; }
      tip.textContent = describe(data.rows[+i]);
      tip.style.left = (e.clientX + 14) + 'px'; tip.style.top = (e.clientY + 14) + 'px'; tip.hidden = false;
    });
    svg.addEventListener('mouseleave', function () { tip.hidden = true; });
    var picked = null;
    function pick(el) {
      if (picked) picked.classList.remove('picked');
      picked = el; el.classList.add('picked');
      var row = data.rows[+el.getAttribute('data-i')];
      var sec = document.getElementById('details');
      sec.innerHTML = '<h2>Event</h2>';
      var dl = document.createElement('dl');
      function add(k, v) { if (v === null || v === '') return; var dt = document.createElement('dt'); dt.textContent = k; var dd = document.createElement('dd'); dd.textContent = v; dl.appendChild(dt); dl.appendChild(dd); }
      data.fields.forEach(function (f, i) { if (f !== 'class') add(f, row[i]); });
      (row[F.bytes] ? row[F.bytes].split(' ') : []).forEach(function (b) { var ep = +b.split('@')[1]; add('  ' + b, data.origins[ep] || ''); });
      sec.appendChild(dl);
    }
    svg.addEventListener('click', function (e) { if (drag && drag.moved) return; if (e.target.getAttribute('data-i') !== null) pick(e.target); });
    if (data.violation) show(data.violation.tick, 100); else apply();
    body.setAttribute('data-ready', '1');
  } catch (e) {
    fail(String(e && e.stack || e));
  }
})();
"#;
