"""audit-trail.html: the audit period on one self-contained page (inline CSS, no script)."""

from __future__ import annotations

from html import escape

from rotation.evidence.audit_trail import AuditTrail

STYLE = """body{font:13px/1.4 "DejaVu Sans",Helvetica,Arial,sans-serif;margin:20px auto;max-width:1100px;color:#1d2329}
table{border-collapse:collapse;width:100%;margin:4px 0 12px}th,td{border:1px solid #d0d4d9;padding:2px 6px;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f4f6f8}.bad{color:#a3161b;font-weight:600}
.ok{color:#1b6e2d;font-weight:600}code{font:11px "DejaVu Sans Mono",monospace}h2{font-size:16px;margin-top:18px}"""


def _day(value: object) -> str:
    return escape(str(value)[:19].replace("+00:00", "") + "Z") if value else ""


def render(trail: AuditTrail) -> str:
    period = f"{trail.start:%Y-%m-%d} to {trail.end:%Y-%m-%d} (end exclusive, UTC)"
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Audit trail {escape(period)}</title>"
           f"<style>{STYLE}</style></head><body><h1>Credential rotations: audit trail</h1>",
           f"<p>Period {escape(period)} · signer pinned: <code>{escape(trail.pin)}</code></p>"]
    out.append(f"<h2>Findings ({len(trail.findings)})</h2>")
    out.append("<ul>" + "".join(f"<li class='bad'>{escape(f)}</li>" for f in trail.findings) + "</ul>"
               if trail.findings else "<p class='ok'>None: every rotation within its interval, each with verified "
               "evidence, and no evidence without a logged rotation.</p>")
    out.append(f"<h2>Keys awaiting retirement ({len(trail.awaiting_retirement)}) and escrows due "
               f"({len(trail.escrows_due)})</h2>")
    out.append("<ul>" + "".join(f"<li class='bad'>{escape(line)}</li>"
                                for line in trail.awaiting_retirement + trail.escrows_due) + "</ul>"
               if trail.awaiting_retirement or trail.escrows_due else "<p class='ok'>None: every old value past its "
               "quiet period has a verified retirement record, and no escrow is past its destruction date.</p>")
    out.append("<h2>Intervals against the policy</h2><table><tr><th>Credential</th><th>From</th><th>To</th>"
               "<th>Days</th><th>Allowed</th><th>Gap</th></tr>")
    out += [f"<tr><td>{escape(i.credential)}</td><td>{escape(i.start_is)} {_day(i.start.isoformat())}</td>"
            f"<td>{escape(i.end_is)} {_day(i.end.isoformat())}</td><td>{i.days}</td><td>{i.allowed_days}</td>"
            f"<td class='{'bad' if i.gap else 'ok'}'>{'GAP' if i.gap else 'ok'}</td></tr>" for i in trail.intervals]
    out.append("</table><h2>Rotations and their evidence</h2><table><tr><th>Rotated (UTC)</th><th>Credential</th>"
               "<th>Logged as</th><th>By</th><th>Reason</th><th>Log row</th><th>Evidence</th></tr>")
    out += [f"<tr><td>{_day(r.rotated_at.isoformat())}</td><td>{escape(r.credential or 'UNKNOWN')}</td>"
            f"<td>{escape(r.logged_as)}</td><td>{escape(r.rotated_by)}</td><td>{escape(r.reason or '')}</td>"
            f"<td><code>{escape(r.rotation_id)}</code></td><td>"
            + ("<br>".join(f"<code>{escape(p)}</code>" for p in r.evidence) or "<span class='bad'>none</span>")
            + "</td></tr>" for r in trail.rotations]
    out.append("</table><h2>Run folders found</h2><table><tr><th>Folder</th><th>Target</th><th>Started</th>"
               "<th>Operator / approver / change</th><th>Verdict</th><th>Signature</th><th>Log rows named</th></tr>")
    for f in trail.folders:
        signature = ("verified, pinned signer" if f.intact and f.signer_verified else
                     "intact, signer not pinned" if f.intact else "DOES NOT VERIFY: " + "; ".join(f.problems[:3]))
        out.append(f"<tr><td><code>{escape(f.path)}</code></td><td>{escape(f.target)}</td><td>{_day(f.started)}</td>"
                   f"<td>{escape(str(f.operator))} / {escape(str(f.approver))} / {escape(str(f.change_id))}</td>"
                   f"<td>{escape(str(f.verdict))}</td><td class='{'ok' if f.intact and f.signer_verified else 'bad'}'>"
                   f"{escape(signature)}</td><td>{len(f.rotation_ids)}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)
