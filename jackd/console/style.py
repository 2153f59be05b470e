"""
The console's one stylesheet, served at ``/static/console.css`` (kept in a
module so that it installs with the code).  Lists are tables on a laptop and
stacked cards on a phone; no web fonts, no images.
"""

CSS = """\
:root {
  --ink: #1c2430;
  --muted: #5d6b7c;
  --line: #dde3ea;
  --paper: #ffffff;
  --ground: #f4f6f9;
  --accent: #2457c5;
  --accent-dark: #1b4398;
  --ok-bg: #e8f6ee;
  --ok-line: #2e8b57;
  --bad-bg: #fdeeee;
  --bad-line: #c0392b;
  --radius: 8px;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0;
  background: var(--ground);
  color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans",
    "DejaVu Sans", sans-serif;
}
code, .mono {
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
    monospace;
  font-size: 0.9em;
  overflow-wrap: anywhere;
}
a { color: var(--accent); }
a:hover { color: var(--accent-dark); }
.wrap { max-width: 1080px; margin: 0 auto; padding: 0 20px; }

.topbar { background: #16202e; color: #cfd8e3; }
.bar {
  display: flex; flex-wrap: wrap; align-items: center;
  justify-content: space-between; gap: 4px 16px;
  min-height: 52px; padding-top: 8px; padding-bottom: 8px;
}
.brand { color: #fff; font-weight: 700; font-size: 1.1rem; text-decoration: none; }
.brand:hover { color: #fff; }
.daemon { font-size: 0.85rem; }
.daemon code { color: #fff; }

main.wrap { padding-top: 22px; padding-bottom: 48px; }
.crumbs { font-size: 0.9rem; color: var(--muted); margin-bottom: 8px; overflow-wrap: anywhere; }
.crumbs .sep { margin: 0 6px; }
.page-head {
  display: flex; flex-wrap: wrap; align-items: center;
  justify-content: space-between; gap: 12px; margin: 4px 0 12px;
}
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 28px 0 10px; }
.lead { color: var(--muted); margin: 0 0 16px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }

.button, button {
  display: inline-block; border: 0; border-radius: var(--radius);
  background: var(--accent); color: #fff; font: inherit; font-weight: 600;
  padding: 9px 16px; text-decoration: none; cursor: pointer; white-space: nowrap;
}
.button:hover, button:hover { background: var(--accent-dark); color: #fff; }
.button:focus-visible, button:focus-visible, a:focus-visible,
input:focus-visible, textarea:focus-visible {
  outline: 3px solid #9db8f2; outline-offset: 2px;
}

table.list {
  width: 100%; border-collapse: collapse; background: var(--paper);
  border: 1px solid var(--line); border-radius: var(--radius); overflow: hidden;
}
.list th, .list td { text-align: left; padding: 10px 14px; vertical-align: top; }
.list th {
  background: #eef2f7; font-size: 0.8rem; text-transform: uppercase;
  letter-spacing: 0.04em; color: var(--muted); font-weight: 600;
}
.list tbody tr + tr td { border-top: 1px solid var(--line); }
.list td.name { font-weight: 600; overflow-wrap: anywhere; }
.list td.name code { white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.list td.desc { color: var(--muted); max-width: 28em; overflow-wrap: anywhere; }
.list .num { text-align: right; }
.list time { white-space: nowrap; }

.queue {
  display: inline-block; border-radius: 999px; padding: 1px 10px;
  font-size: 0.85rem; font-weight: 600; background: #eef2f7;
}
.q-immediate { background: #fde8e4; color: #a23216; }
.q-high { background: #fff1d6; color: #8a5300; }
.q-medium { background: #e3edff; color: #1f4fae; }
.q-low { background: #e9eef3; color: #465566; }

.pager { display: flex; gap: 20px; justify-content: flex-end; margin-top: 14px; }
.pager .next { font-weight: 600; }
.empty {
  background: var(--paper); border: 1px dashed var(--line);
  border-radius: var(--radius); padding: 24px; text-align: center; color: var(--muted);
}

.facts {
  display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr));
  gap: 12px 24px; margin: 0 0 8px; background: var(--paper);
  border: 1px solid var(--line); border-radius: var(--radius); padding: 16px;
}
.facts .wide { grid-column: 1 / -1; }
.facts dt { font-size: 0.8rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: 0.04em; }
.facts dd { margin: 2px 0 0; overflow-wrap: anywhere; }

.notice {
  background: var(--ok-bg); border: 1px solid var(--ok-line);
  border-left-width: 6px; border-radius: var(--radius);
  padding: 14px 18px; margin: 0 0 20px;
}
.notice h2 { margin: 0 0 4px; color: #1d6b41; }
.notice p { margin: 0 0 8px; }
.new-id {
  display: inline-block; background: var(--paper); border: 1px solid var(--ok-line);
  border-radius: 6px; padding: 6px 12px; font-size: 1.25rem; font-weight: 700;
  user-select: all; overflow-wrap: anywhere;
}
.ids { display: grid; grid-template-columns: max-content 1fr; gap: 8px 12px;
  align-items: center; margin: 0; }
.ids dt { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  color: var(--muted); }
.ids dd { margin: 0; min-width: 0; }

.error {
  background: var(--bad-bg); border: 1px solid var(--bad-line);
  border-left-width: 6px; border-radius: var(--radius);
  padding: 12px 16px; margin: 0 0 18px; overflow-wrap: anywhere;
}
.error strong { color: #8e2419; }
.error p { margin: 4px 0 0; }

.card {
  background: var(--paper); border: 1px solid var(--line);
  border-radius: var(--radius); padding: 20px; max-width: 640px;
}
.field { margin: 0 0 18px; }
.field label, .field legend { display: block; font-weight: 600; margin-bottom: 4px; }
.optional { font-weight: 400; color: var(--muted); font-size: 0.9em; }
input[type=text], input[type=number], textarea {
  width: 100%; font: inherit; color: inherit; padding: 9px 11px;
  border: 1px solid #b8c3d0; border-radius: 6px; background: #fff;
}
input[type=number] { max-width: 10em; }
[aria-invalid=true] { border-color: var(--bad-line) !important;
  box-shadow: 0 0 0 2px #f4c7c2; }
.help { color: var(--muted); font-size: 0.875rem; margin: 4px 0 0; }
fieldset { border: 0; padding: 0; margin: 0 0 18px; min-width: 0; }
.queues { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr));
  gap: 8px; }
.queues legend { grid-column: 1 / -1; }
.queues .choice {
  display: flex; gap: 8px; margin: 0; align-items: flex-start; border: 1px solid #b8c3d0;
  border-radius: 6px; padding: 10px; cursor: pointer; font-weight: 400;
}
.queues .choice:has(input:checked) { border-color: var(--accent); background: #f0f5ff; }
.choice input { margin-top: 4px; }
.choice-text { display: flex; flex-direction: column; }
.choice small { color: var(--muted); }
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: 16px; }

@media (max-width: 640px) {
  .wrap { padding: 0 14px; }
  h1 { font-size: 1.35rem; }
  table.list, .list tbody, .list tr, .list td { display: block; width: 100%; }
  table.list { border: 0; background: none; }
  .list thead { position: absolute; width: 1px; height: 1px; overflow: hidden;
    clip: rect(0 0 0 0); }
  .list tr {
    background: var(--paper); border: 1px solid var(--line);
    border-radius: var(--radius); margin-bottom: 10px; padding: 8px 0;
  }
  .list tbody tr + tr td { border-top: 0; }
  .list td { padding: 4px 14px; display: grid;
    grid-template-columns: 8.5em minmax(0, 1fr); gap: 8px; text-align: left; }
  .list td.num { text-align: left; }
  .list td::before {
    content: attr(data-label); color: var(--muted); font-size: 0.8rem;
    font-weight: 600; text-transform: uppercase; letter-spacing: 0.03em; padding-top: 2px;
  }
  .list td.desc { max-width: none; }
  .list td > * { justify-self: start; }
  .list td.name code { white-space: normal; }
  .table-wrap { overflow-x: visible; }
  .card { padding: 16px; }
  .new-id { font-size: 1.05rem; }
  .pager { justify-content: space-between; }
}
"""
