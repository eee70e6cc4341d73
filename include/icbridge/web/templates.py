"""HTML of the Balance All pages (Jinja2, autoescaped). No external CSS/JS: the hosts have no internet."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Balance All{% endblock %} · icbridge</title>
<style>
 body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 24px;color:#1a1a1a;font-size:14px}
 h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:20px 0 8px}
 a{color:#1565c0;text-decoration:none} a:hover{text-decoration:underline}
 table{border-collapse:collapse;margin:4px 0 12px} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
 th{background:#f3f5f8;white-space:nowrap} td.num{text-align:right;font-variant-numeric:tabular-nums}
 tr:nth-child(even) td{background:#fafbfc} table.runs td{white-space:nowrap}
 .summary td:first-child{color:#555} .status-succeeded{color:#2e7d32}
 .status-failed_threshold,.status-failed{color:#c62828} .status-running{color:#ef6c00}
 .pill{display:inline-block;padding:2px 8px;border:1px solid #ccc;border-radius:12px;margin:0 4px 4px 0}
 .pill.on{background:#1565c0;color:#fff;border-color:#1565c0} .charts{display:flex;flex-wrap:wrap;gap:24px}
 .charts figure{margin:0} figcaption{font-weight:600;margin-bottom:4px} .muted{color:#666}
 nav.crumbs{margin-bottom:8px} .pager a,.pager span{margin-right:8px}
 table.runs{display:block;overflow-x:auto;max-width:100%} /* a long run list scrolls, not the page */
 table.items{width:100%;font-size:13px} table.items th,table.items td{padding:3px 5px}
 table.items th{white-space:normal;vertical-align:bottom} table.items td{white-space:nowrap}
 table.items td.msg{white-space:normal;min-width:12em;max-width:28em;overflow-wrap:anywhere}
 table.index{display:table;width:100%;font-size:13px} table.index th,table.index td{padding:3px 5px}
 table.index th{white-space:normal;vertical-align:bottom} table.index td.wrap{white-space:normal}
 table.health{display:table;width:100%;font-size:13px} table.health th,table.health td{padding:3px 5px}
 table.health th{white-space:normal;vertical-align:bottom} table.health td{white-space:normal}
 table.health td.message{min-width:8em;max-width:22em;overflow-wrap:anywhere;font-size:12px}
 table.health td.when{white-space:nowrap} .health-counts{font-size:15px}
 td.trend{padding:0 4px;line-height:0} .icb-trend{display:block}
 details summary{cursor:pointer;color:#1565c0} details pre{white-space:pre-wrap;margin:4px 0;font-size:12px}
</style></head>
<body>{% block body %}{% endblock %}</body></html>
"""

INDEX = """{% extends "base.html" %}
{% block title %}Balance All runs{% endblock %}
{% block body %}
<h1>Balance All: weekly reconciliation runs</h1>
<p class="muted">IC balances against the CIS (system of record). Logged in as {{ user_name }}.</p>
{% if not groups %}<p>No Balance All run has been stored yet.</p>{% endif %}
{% if weeks %}
<h2 id="week-against-week">This week against last week</h2>
<table class="runs index" id="weeks">
<thead><tr><th>Biller</th><th>Latest weekly run</th><th>Mismatches</th><th>vs last week</th>
<th>Net difference</th><th>vs last week</th><th>Sum of absolute differences</th><th>vs last week</th>
<th>New</th><th>Still open</th><th>Resolved</th><th>Mismatches, last 12 weekly runs</th></tr></thead>
<tbody>
{% for biller, w in weeks %}{% set r, p, c = w.latest, w.previous, w.changes %}
<tr data-biller="{{ biller }}"><td><a href="#biller-{{ biller }}">{{ biller }}</a></td>
<td class="wrap"><a href="{{ run_url(r.id) }}">#{{ r.id }}</a> {{ week_ending(r.week) }}
{%- if w.warning %}<br><span class="status-running" title="{{ w.warning }}">warning: {{ r.accounts_checked }}
accounts checked</span>{% endif %}</td>
<td class="num">{{ r.mismatches }}</td><td class="num">{{ delta(r.mismatches, p.mismatches if p else none) }}</td>
<td class="num">{{ as_money(r.net_difference) }}</td>
<td class="num">{{ delta(r.net_difference, p.net_difference if p else none, as_money=true) }}</td>
<td class="num">{{ as_money(r.sum_abs_difference) }}</td>
<td class="num">{{ delta(r.sum_abs_difference, p.sum_abs_difference if p else none, as_money=true) }}</td>
<td class="num">{{ c.new if c else "" }}</td><td class="num">{{ c.still_open if c else "" }}</td>
<td class="num">{{ c.resolved if c else "" }}</td><td class="trend">{{ w.trend | safe }}</td></tr>
{% endfor %}
</tbody></table>
<p class="muted">Weekly runs only (scheduled, not dry; of two runs of a week, the one that finished last):
manual and dry runs are listed below but never compared with. New, still open and resolved: the latest weekly
run's accounts against the weekly run of the week before (a run that checked no account is never that).</p>
{% endif %}
{% for biller, runs in groups %}
<h2 id="biller-{{ biller }}">{{ biller }}</h2>
<table class="runs index">
<thead><tr><th>Run</th><th>Week</th><th>Started</th><th>Status</th><th>Kind</th><th>Accounts</th>
{% for outcome in outcomes %}<th>{{ labels[outcome] }}</th>{% endfor %}
<th>Sum of absolute differences</th><th>Net difference</th><th>Corrections</th></tr></thead>
<tbody>
{% for run in runs %}
<tr><td><a href="{{ run_url(run.id) }}">#{{ run.id }}</a></td>
<td class="wrap">{{ week_ending(run.week) }} <span class="muted">{{ run.week }}</span></td>
<td class="wrap">{{ local(run.biller_id, run.started_at) }}</td>
{% if warning(run.id) %}<td class="status-running wrap" title="{{ warning(run.id) }}">{{ run.status }}: warning,
{{ run.accounts_checked }} accounts checked</td>
{% else %}<td class="status-{{ run.status }} wrap">{{ run.status }}</td>{% endif %}<td>{{ run_kind(run) }}</td>
<td class="num">{{ run.accounts_checked }}</td>
{% for outcome in outcomes %}<td class="num">{{ run.counts[outcome] }}</td>{% endfor %}
<td class="num">{{ as_money(run.sum_abs_difference) }}</td><td class="num">{{ as_money(run.net_difference) }}</td>
<td class="num">{{ run.corrections_made }}</td></tr>
{% endfor %}
</tbody></table>
{% endfor %}
{% endblock %}
"""

RUN = """{% extends "base.html" %}
{% block title %}Balance All {{ run.biller_id }} {{ run.week }}{% endblock %}
{% block body %}
<nav class="crumbs"><a href="{{ index_url }}">Balance All</a> › {{ run.biller_id }} › run #{{ run.id }}</nav>
<h1>{{ run.biller_id }} — {{ week_ending(run.week) }}
<span class="muted">({{ run.week }}, {{ run_kind(run) }})</span></h1>
{% if warning %}<p class="status-running" id="coverage-warning">Warning: {{ warning }}.</p>{% endif %}
<table class="summary">
{% for label, value in summary %}<tr><td>{{ label }}</td><td>{{ value }}</td></tr>{% endfor %}
</table>
<div class="charts">
<figure id="chart-differences"><figcaption>Difference distribution</figcaption>{{ histogram | safe }}</figure>
<figure id="chart-rate"><figcaption>Mismatch rate, past weeks</figcaption>{{ rate_chart | safe }}</figure>
</div>
<h2 id="changes">What changed since last week</h2>
{% if comparison is none %}<p class="muted">Not compared: the run did not check every account (or was stored
before comparisons existed).</p>
{% elif previous is none %}<p>No earlier completed weekly run to compare with: every account is new.</p>
{% else %}<p>Against the weekly run <a href="{{ previous.id }}">#{{ previous.id }}</a>
({{ week_ending(previous.week) }}): <b>{{ comparison.new }}</b> new, <b>{{ comparison.still_open }}</b> still open,
<a href="#resolved"><b>{{ comparison.resolved }}</b> resolved</a>.</p>{% endif %}
<h2>Accounts that are not a match ({{ total }}{% if outcome %}: {{ labels.get(outcome, outcome) }}{% endif %}
{%- if change %}, {{ change_labels[change] }}{% endif %})</h2>
<p>
<a class="pill{% if not outcome %} on{% endif %}" href="{{ page_url(outcome='', page=1) }}">all ({{ stored }})</a>
{% for name, count in outcome_counts %}
<a class="pill{% if outcome == name %} on{% endif %}" href="{{ page_url(outcome=name, page=1) }}">
{{- labels.get(name, name) }} ({{ count }})</a>
{% endfor %}
{% if comparison %}<span class="muted">·</span>
{% for mark, count in (("new", comparison.new), ("still_open", comparison.still_open)) %}
<a class="pill{% if change == mark %} on{% endif %}"
 href="{{ page_url(change='' if change == mark else mark, page=1) }}">
{{- change_labels[mark] }} ({{ count }})</a>
{% endfor %}{% endif %}
</p>
<p>Download: <a id="download-csv" href="{{ download_url('csv') }}">CSV</a> ·
<a id="download-xlsx" href="{{ download_url('xlsx') }}">XLSX</a>
<span class="muted">(the rows shown: current filter and order)</span></p>
<table class="items" id="items">
<thead><tr>
{% for column in columns %}<th title="{{ column }}"><a href="{{ sort_url(column) }}">{{ headers.get(column, column) }}
{%- if sort == column %} {{ "▼" if desc else "▲" }}{% endif %}</a></th>{% endfor %}
<th>Correction</th></tr></thead>
<tbody>
{% for row in rows %}
<tr>{% for column in columns %}<td
{%- if column in money %} class="num"{% elif column == "message" %} class="msg"{% endif %}>
{%- if column == "outcome" %}{{ labels.get(row[column], row[column]) }}
{%- elif column == "change" %}<span title="{{ labels.get(row.previous_outcome, '') }}">{{ change_text(row) }}</span>
{%- elif column in money %}{{ as_money(row[column]) }}{% else %}{{ cell(row[column]) }}{% endif %}</td>
{%- endfor %}
<td>{% if row["before"] or row["after"] %}<details><summary>before / after</summary>
<pre>before: {{ cell(row["before"]) }}
after:  {{ cell(row["after"]) }}</pre></details>{% endif %}</td></tr>
{% endfor %}
</tbody></table>
<div class="pager">
{% if page > 1 %}<a href="{{ page_url(page=1) }}">« first</a>
<a href="{{ page_url(page=page - 1) }}">‹ previous</a>{% endif %}
<span>page {{ page }} of {{ pages }} ({{ per_page }} per page)</span>
{% if page < pages %}<a href="{{ page_url(page=page + 1) }}">next ›</a>
<a href="{{ page_url(page=pages) }}">last »</a>{% endif %}
</div>
{% if comparison and comparison.resolved %}
<h2 id="resolved">Resolved since last week ({{ comparison.resolved }}
{%- if comparison.resolved > resolved_rows|length %}, the {{ resolved_rows|length }} largest shown; all in the XLSX
{%- endif %})</h2>
<p class="muted">Reported by the weekly run #{{ comparison.previous_run_id }}, not by this run: the account matched,
or IC no longer lists an open invoice for it.</p>
<table class="items" id="resolved-items"><thead><tr><th>Account</th><th>Invoice</th><th>Last week</th>
<th>Difference last week</th><th>Open since</th></tr></thead><tbody>
{% for r in resolved_rows %}
<tr><td>{{ r.account_number }}</td><td>{{ r.invoice_number }}</td>
<td>{{ labels.get(r.previous_outcome, r.previous_outcome) }}</td>
<td class="num">{{ as_money(r.difference) }}</td><td>{{ local_date(r.open_since) }}</td></tr>
{% endfor %}
</tbody></table>
{% endif %}
{% endblock %}
"""

HEALTH = """{% extends "base.html" %}
{% block title %}Integration health{% endblock %}
{% block body %}
<h1>Integration health</h1>
<p class="muted">Per biller and flow: the last successful run, the point up to which everything was
handled (the watermark), the lag behind now, items waiting for a person, and invoice files
rejected in the last 7 days. Worst first; click a column to sort. As of {{ now }} UTC; times in
each biller's zone. Logged in as {{ user_name }}. <a href="rows.json">As JSON</a> (for a monitor).</p>
{% if rows %}<p class="health-counts"><b>{{ need }} need attention</b>{% for status, n in counts %}
 · <span class="status-{{ 'failed' if status in ('late', 'behind', 'failed') else ('running' if status in
 ('attention', 'never run') else 'succeeded') }}">{{ n }} {{ status }}</span>{% endfor %}</p>{% endif %}
{% if not rows %}<p>No biller flow is configured or recorded yet.</p>{% endif %}
<table class="runs health">
<thead><tr>{% for key, label in columns %}<th><a href="{{ sort_url(key) }}">{{ label }}{% if key == sort %}
{{ " ▼" if desc else " ▲" }}{% endif %}</a></th>{% endfor %}<th>Last message</th></tr></thead>
<tbody>
{% for row in rows %}
<tr class="health-row" data-biller="{{ row.biller_id }}" data-flow="{{ row.flow }}">
<td>{{ row.biller_id }}</td><td><a href="/dags/{{ row.biller_id }}__{{ row.flow }}" title="its DAG and latest runs">
{{- row.flow }}</a></td>
<td class="status-{{ 'failed' if row.status in ('late', 'behind', 'failed') else ('running' if row.status in
 ('attention', 'never run') else 'succeeded') }}">{{ row.status }}{% if row.status == 'late' and row.due %}
<br><span class="muted">no file since {{ local(row, row.due) }}</span>{% endif %}</td>
<td class="num">{{ lag(row) }}</td>
<td class="when">{{ local(row, row.covered_through) }}</td><td class="when">{{ local(row, row.last_success) }}</td>
<td class="num">{% if row.in_doubt %}<a href="{{ row.biller_id }}/doubts">{{ row.in_doubt }}</a>
{%- else %}{{ "—" if row.in_doubt is none else row.in_doubt }}{% endif %}</td>
<td class="num">{{ "—" if row.rejected_7d is none else row.rejected_7d }}</td>
<td class="muted message">{{ (row.last_message or "")[:300] }}</td></tr>
{% endfor %}
</tbody></table>
<p class="muted">Late: the invoices flow has no AUS export since its last due day's deadline
(<code>invoices.expected</code>: due days, time, grace). Lag bound: <code>sync.max_lag_minutes</code>
per biller (a live run further behind fails); 26 h for the daily payment export; 8 days for the
weekly Balance All (its last completed weekly run). In doubt: payments in doubt, refused or being sent
(<code>python -m icbridge payments show</code>), uploads and deliveries left sending
(docs/operations.md). — : nothing recorded or not applicable.</p>
{% endblock %}
"""

ERROR = """{% extends "base.html" %}
{% block title %}{{ status }} {{ title }}{% endblock %}
{% block body %}
<nav class="crumbs"><a href="{{ index_url }}">Balance All</a></nav>
<h1>{{ status }} — {{ title }}</h1>
<p>{{ detail }}</p>
<p class="muted">Back to <a href="{{ index_url }}">the Balance All runs</a>.</p>
{% endblock %}
"""

BILLERS = """{% extends "base.html" %}
{% block title %}Biller check{% endblock %}
{% block body %}
<h1>Biller check: onboarding preflight</h1>
<p class="muted">Validates the biller file and proves every connection it names (IC, the CIS, the
FTPS/SFTP inbox, SMTP); nothing is uploaded, paid, sent or created. Run it before unpausing a new
biller (the same as <code>python -m icbridge biller check &lt;biller_id&gt;</code>).</p>
<table class="runs"><thead><tr><th>Biller</th><th>File</th><th></th></tr></thead><tbody>
{% for biller_id, detail, valid in rows %}
<tr><td>{{ biller_id }}</td><td{% if not valid %} class="status-failed"{% endif %}>{{ detail }}</td>
<td><a href="{{ biller_id }}/check">check</a></td></tr>
{% endfor %}
</tbody></table>
{% endblock %}
"""

CHECK = """{% extends "base.html" %}
{% block title %}Check {{ biller_id }}{% endblock %}
{% block body %}
<nav class="crumbs"><a href="../">Biller check</a> › {{ biller_id }}</nav>
{% if checks is none %}
<h1>{{ biller_id }}: onboarding preflight</h1>
<p class="muted">Logs in to every connection the biller file names, with the stored credentials;
nothing is uploaded, paid, sent or created.</p>
{% else %}
<h1 class="{{ 'status-succeeded' if ok else 'status-failed' }}">{{ biller_id }}:
{{ "ready to unpause" if ok else "fix the failed checks first" }}</h1>
<table class="summary" id="checks"><tbody>
{% for c in checks %}
<tr><td class="{{ 'status-succeeded' if c.ok else 'status-failed' }}">{{ "ok" if c.ok else "FAIL" }}</td>
<td>{{ c.name }}</td><td>{{ c.detail }}</td></tr>
{% endfor %}
</tbody></table>
{% endif %}
<form method="post" action="check"><input type="hidden" name="token" value="{{ token }}">
<button type="submit">{{ "Run the check" if checks is none else "Check again" }}</button></form>
{% endblock %}
"""

DOUBTS = """{% extends "base.html" %}
{% block title %}In doubt: {{ biller_id }}{% endblock %}
{% block body %}
<nav class="crumbs"><a href="../">Integration health</a> › {{ biller_id }}</nav>
<h1>{{ biller_id }}: waiting for a person ({{ items|length }})</h1>
<table class="runs" id="doubts"><thead><tr><th>Kind</th><th>Item</th><th>Status</th><th>Detail</th>
<th>Owning run</th></tr></thead><tbody>
{% for kind, item, status, detail, holder in items %}
<tr><td>{{ kind }}</td><td>{{ item }}</td><td>{{ status }}</td><td class="muted">{{ detail[:300] }}</td>
<td class="muted">{{ holder }}</td></tr>
{% endfor %}
</tbody></table>
<p class="muted">Settle with <code>python -m icbridge ledger|payments|deliveries settle … --reason '…'</code>
(docs/operations.md); a row whose run is alive is being sent, not in doubt.</p>
<h2>Settled (newest first)</h2>
<table class="runs" id="settled"><thead><tr><th>When (UTC)</th><th>Who</th><th>Kind</th><th>Item</th>
<th>From → to</th><th>Why</th></tr></thead><tbody>
{% for s in settled %}
<tr><td>{{ s.settled_at.strftime("%Y-%m-%d %H:%M") }}</td><td>{{ s.settled_by }}</td><td>{{ s.kind }}</td>
<td>{{ s.item }}</td><td>{{ s.from_status }} → {{ s.to_status }}{{ " (forced)" if s.forced else "" }}</td>
<td>{{ s.reason }}</td></tr>
{% endfor %}
</tbody></table>
{% endblock %}
"""

ENV = Environment(
    loader=DictLoader({"base.html": BASE, "index.html": INDEX, "run.html": RUN, "health.html": HEALTH,
                       "error.html": ERROR, "billers.html": BILLERS, "check.html": CHECK,
                       "doubts.html": DOUBTS}),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
