"""Render an audit report (:func:`rotation.reporting.audit_report.build_report`) as a terminal
table, JSON, or a self-contained HTML page with SVG charts.

HTML: a Jinja2 template (``templates/report.html.j2``, autoescaped) with two pygal charts
rendered to inline SVG (key age per consumer against its max age; rotations over time, one line
per consumer). pygal's optional tooltip script is left out (``js=[]``), so the page loads nothing
from the network: it is one file that opens offline.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rotation.terminal import for_terminal

__all__ = ["LEGEND", "render_html", "render_json", "render_table"]

_DAY = 86400.0


def render_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (schema ``schemas/audit.schema.json``)."""
    return json.dumps(report, indent=2, sort_keys=False)


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    if s >= 86400:
        return f"{sign}{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h{(s % 3600) // 60}m"
    return f"{sign}{s // 60}m{s % 60}s"


def _rows(report: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for c in report["consumers"]:
        cur, prev = c["current"] or {}, c["previous"] or {}
        last = c["last_rotation"] or {}
        acks = c["acknowledgements"]
        ok = sum(1 for t in acks["targets"] if t["ok"])
        app = acks["app"]
        tr = c["traffic"]

        def reqs(t: dict | None) -> str:
            if not t:
                return "-"
            today = "?" if t["requests_today"] is None else str(t["requests_today"])
            return today + (f" (last {t['last_seen_day']})" if t["last_seen_day"] else "")

        rows.append({
            "consumer": c["name"], "tier": c["tier"],
            "serial": str(cur.get("serial", "-")), "kv": str(c["kv_version"]),
            "age": _dur(cur.get("age_seconds")) + (" OVERDUE" if c["overdue"] else ""),
            "last": f"{last.get('outcome', '-')} {last.get('at') or ''}".strip(),
            "acks": f"{ok}/{len(acks['targets'])}" + (f" app={app['serial']}" if app else ""),
            "traffic cur/prev": f"{reqs(tr['current'])}/{reqs(tr['previous'])}",
            "previous": str(prev.get("serial", "-")),
        })
    return rows


def render_table(report: dict[str, Any]) -> str:
    """A plain-text report for a terminal: one row per consumer, then the findings (most severe
    first). Every value from outside (names, API key names in findings, error texts) is
    neutralised on its own (:func:`rotation.terminal.for_terminal`): it cannot move the cursor,
    erase or add a line."""
    rows = [{k: for_terminal(v) for k, v in r.items()} for r in _rows(report)]
    cols = ["consumer", "tier", "serial", "kv", "age", "previous", "last", "acks", "traffic cur/prev"]
    lines = []
    if rows:
        widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
        lines.append("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
        lines += ["  ".join(r[c].ljust(w) for c, w in zip(cols, widths)).rstrip() for r in rows]
        lines += ["", "legend:"] + [f"  {term}: {meaning}" for term, meaning in LEGEND]
    inv = report["key_inventory"]
    lines.append("")
    lines.append(f"key inventory: {inv['managed_keys']} managed API keys, "
                 f"{len(inv['unknown_to_vault'])} unknown to Vault, "
                 f"{len(inv['missing_in_api_gateway'])} missing in API Gateway"
                 + ("" if inv["checked"] else f" (not checked: {for_terminal(inv['error'])})"))
    drift = report["policy_drift"]
    if drift is not None:
        states: dict[str, int] = {}
        for i in drift["items"]:
            states[i["state"]] = states.get(i["state"], 0) + 1
        lines.append("policy drift: " + (", ".join(f"{n} {for_terminal(s)}" for s, n in sorted(states.items()))
                                         or "nothing compared"))
    sec = report["security_policy"]
    if sec is not None:
        lines.append(f"security policy check: {sec['mandatory']} mandatory, {sec['advisory']} advisory violation(s)")
    va = report["vault_audit"]
    if va is not None:
        lines.append(f"vault audit log: {va['responses']} responses, {len(va['denied'])} denied on rotation paths, "
                     f"{len(va['unexpected_logins'])} unexpected logins, {len(va['failed_logins'])} failed logins")
    f = report["summary"]["findings"]
    lines.append(f"findings: {f['high']} high, {f['medium']} medium, {f['low']} low")
    lines += [f"  [{for_terminal(x['severity'])}] {for_terminal(x['kind'])}: {for_terminal(x['message'])}"
              for x in report["findings"]]
    return "\n".join(lines)


#: What each symbol of the consumers table means (the HTML legend and the table's footnote).
LEGEND: tuple[tuple[str, str], ...] = (
    ("serial", "the current key's serial (1, 2, ...); \"-\": no key yet"),
    ("age", "time since the current key was promoted; OVERDUE: older than the consumer's max_age"),
    ("previous", "serial of the previous key, still enabled in its grace period; \"-\": none"),
    ("acks n/m", "n of the consumer's m push targets took the current key (0/0: no push target, the app pulls)"),
    ("app=N", "the serial the app itself acknowledged at <prefix>/acks/<consumer>; absent: no acknowledgement"),
    ("requests today a/b", ("requests API Gateway counted today with the current (a) and previous (b) key; "
                           "\"?\": API Gateway did not answer (the emulator never does); \"-\": no such key; "
                           "(last DAY): the last day with requests")),
)


def _time_format(span_seconds: float) -> str:
    """A strftime format that tells apart the moments of a time axis spanning ``span_seconds``."""
    if span_seconds < 3 * 3600:
        return "%H:%M:%S"
    if span_seconds < 3 * _DAY:
        return "%m-%d %H:%M"
    return "%Y-%m-%d"


def _charts(report: dict[str, Any]) -> dict[str, str]:
    """Two SVG charts, readable at any scale: each key's age as a percentage of its max_age (a
    minutes-old key beside a 30-day limit is still a visible bar, labelled with the real age), and
    every promotion Vault still records (current, previous, retired keys until deleted) on a time
    axis whose labels carry seconds, minutes or days as the span needs."""
    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", font_family="sans-serif",
                  colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"))
    common = {"js": [], "disable_xml_declaration": True, "style": style, "width": 800, "height": 360,
              "no_data_text": "no data"}
    consumers = report["consumers"]
    age = pygal.HorizontalBar(title="Current key age as a share of its max_age (%)", range=(0, 100),
                              value_formatter=lambda v: f"{v:.1f}%", print_values=True, **common)
    age.x_labels = [f"{c['name']}: {_dur((c['current'] or {}).get('age_seconds'))} of {_dur(c['max_age_seconds'])}"
                    for c in consumers]
    shares = []
    for c in consumers:
        seconds = (c["current"] or {}).get("age_seconds")
        pct = 100.0 * (seconds or 0) / c["max_age_seconds"] if c["max_age_seconds"] else 0.0
        shares.append({"value": round(min(pct, 100.0), 1) if seconds is not None else None,
                       "label": f"{_dur(seconds)} of {_dur(c['max_age_seconds'])}"
                                + (" (OVERDUE)" if c["overdue"] else "")})
    age.add("key age, % of max_age", shares)
    age.add("max_age (100%)", [100.0 for _ in consumers])
    points = {c["name"]: [(datetime.fromisoformat(h["promoted_at"]), h["serial"], h["emergency"])
                          for h in c["history"] if h["promoted_at"]] for c in consumers}
    moments = [t for pts in points.values() for t, _, _ in pts]
    span = (max(moments) - min(moments)).total_seconds() if moments else 0.0
    fmt = _time_format(span)
    over = pygal.DateTimeLine(title=f"Promotions over time (serial; time axis {fmt.replace('%', '')}, UTC)",
                              x_label_rotation=20, x_value_formatter=lambda dt: dt.strftime(fmt),
                              dots_size=5, **common)
    for name, pts in points.items():
        if pts:
            over.add(name, [{"value": (t, serial), "label": ("emergency " if emergency else "") + f"serial {serial}"}
                            for t, serial, emergency in pts])
    if moments:
        lo, hi = min(moments), max(moments)
        if span == 0:                       # one moment: a readable axis around it
            lo, hi = lo - timedelta(seconds=30), hi + timedelta(seconds=30)
        step = (hi - lo) / 5
        over.x_labels = [lo + step * i for i in range(6)]
    return {"key_age": age.render(is_unicode=True), "rotations": over.render(is_unicode=True)}


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page (inline CSS and SVG, no external resource)."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("rotation.reporting", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["dur"] = _dur
    charts = {k: Markup(v) for k, v in _charts(report).items()}  # pygal's own SVG (its texts escaped)
    return env.get_template("report.html.j2").render(report=report, charts=charts, rows=_rows(report),
                                                     legend=LEGEND)
