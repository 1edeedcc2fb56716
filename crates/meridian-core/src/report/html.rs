//! The report as one self-contained, printable HTML page: inline CSS (with print rules), no
//! script, nothing fetched.

use std::fmt::Write;

use super::markdown::{chain_head, wire};
use super::{Answer, RegionReport, Report, scope_of, shown_value, time, verdict_name};

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111; margin: 2rem auto; max-width: 75rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.3rem; border-top: 2px solid #333; padding-top: .8rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0 .8rem; }
th, td { border: 1px solid #bbb; padding: .2rem .4rem; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.answer { display: inline-block; font-weight: bold; padding: .1rem .5rem; border-radius: .25rem; }
.answer.no { background: #d7f5dd; color: #0a5a1c; }
.answer.unproven { background: #fff1c2; color: #6b4e00; }
.answer.yes { background: #ffd6d6; color: #8a0000; }
.muted { color: #555; }
ul { margin: .2rem 0 .6rem; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  section.region + section.region { break-before: page; }
  table, tr, li { break-inside: avoid; }
  th { background: #eee !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .answer { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
";

/// Render `report` as a standalone HTML page.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write_report(&mut out, report);
    out
}

/// Escape text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn answer(a: Answer) -> String {
    format!("<span class=\"answer {0}\">{0}</span>", a.as_str())
}

fn write_report(out: &mut String, report: &Report) -> std::fmt::Result {
    let log = &report.log;
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(out, "<title>Evidence report: {}</title>", esc(&report.plan))?;
    writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(out, "<h1>Evidence report: {}</h1>", esc(&report.plan))?;
    writeln!(out, "<ul>")?;
    let gap = match log.gap {
        Some((expected, got)) => format!("<strong>not gapless: expected seq {expected}, found {got}</strong>"),
        None => "gapless".into(),
    };
    writeln!(
        out,
        "<li>Audit records: {} (seq {} to {}, {} to {}); {gap}</li>",
        log.records,
        log.first_seq,
        log.last_seq,
        time(log.first_at),
        time(log.last_at)
    )?;
    writeln!(out, "<li>Audit chain head: {}</li>", esc(&chain_head(report)))?;
    writeln!(
        out,
        "<li id=\"traffic-without-approvals\">Traffic without its approvals: {}</li>",
        answer(report.traffic_without_approvals)
    )?;
    writeln!(out, "</ul>")?;
    for region in &report.regions {
        write_region(out, region)?;
    }
    writeln!(out, "</body>\n</html>")
}

fn table_head(out: &mut String, columns: &[&str]) -> std::fmt::Result {
    write!(out, "<table><thead><tr>")?;
    for c in columns {
        write!(out, "<th>{c}</th>")?;
    }
    writeln!(out, "</tr></thead><tbody>")
}

fn row(out: &mut String, cells: &[String]) -> std::fmt::Result {
    write!(out, "<tr>")?;
    for c in cells {
        write!(out, "<td>{c}</td>")?;
    }
    writeln!(out, "</tr>")
}

fn write_region(out: &mut String, r: &RegionReport) -> std::fmt::Result {
    writeln!(out, "<section class=\"region\" id=\"region-{}\">", esc(&r.region))?;
    let wave = r.wave.as_ref().map(|w| format!(" <span class=\"muted\">(wave {})</span>", esc(w))).unwrap_or_default();
    writeln!(out, "<h2>Region {}{wave}</h2>", esc(&r.region))?;
    let services: Vec<String> =
        r.services.iter().map(|s| format!("{} {} {}%", esc(&s.service), s.phase, s.percent)).collect();
    writeln!(out, "<ul>")?;
    writeln!(
        out,
        "<li>Services: {}</li>",
        if services.is_empty() { "none moved".into() } else { services.join(", ") }
    )?;
    writeln!(out, "<li>First traffic: {}</li>", r.first_traffic.map_or("never".into(), time))?;
    writeln!(
        out,
        "<li class=\"traffic-without-approvals\">Traffic without its approvals: {}</li>",
        answer(r.traffic_without_approvals)
    )?;
    writeln!(out, "</ul>")?;

    writeln!(out, "<h3>Approvals in force at first traffic</h3>")?;
    if r.approvals_at_first_traffic.is_empty() {
        writeln!(out, "<p>None cited (the region needed no approval, or never received traffic).</p>")?;
    } else {
        table_head(
            out,
            &["approval", "flag", "granted by", "reference", "granted at", "expires", "scope", "signature", "history"],
        )?;
        for a in &r.approvals_at_first_traffic {
            let history: Vec<String> = a
                .history
                .iter()
                .map(|e| {
                    let reason = e.reason.as_ref().map(|x| format!(": {}", esc(x))).unwrap_or_default();
                    format!("{} at {} by {} ({}){reason}", wire(&e.kind), time(e.at), esc(&e.by), esc(&e.source))
                })
                .collect();
            let history = history.join("<br>");
            match &a.record {
                Some(record) => row(
                    out,
                    &[
                        esc(&a.name),
                        esc(&record.flag),
                        esc(&record.granted_by),
                        esc(record.reference.as_deref().unwrap_or("-")),
                        record.granted_at.map_or("-".into(), time),
                        record.expires.map_or("never".into(), time),
                        esc(&scope_of(&record.scope)),
                        esc(&a.signature),
                        history,
                    ],
                )?,
                None => row(out, &[esc(&a.name), "?".into(), "not in the approval history".into()])?,
            }
        }
        writeln!(out, "</tbody></table>")?;
    }

    writeln!(out, "<h3>Proof: every raise of traffic cites approvals that held</h3>")?;
    if r.proof.is_empty() {
        writeln!(out, "<p>No record raised traffic here.</p>")?;
    } else {
        table_head(
            out,
            &["seq", "at", "service", "traffic", "flags needed", "approvals cited (valid then?)", "without approvals"],
        )?;
        for p in &r.proof {
            let cited: Vec<String> = p
                .approvals
                .iter()
                .map(|a| match &a.problem {
                    None => format!("{} (valid)", esc(&a.name)),
                    Some(problem) => format!("{} (<strong>NOT valid</strong>: {})", esc(&a.name), esc(problem)),
                })
                .collect();
            let flags = if p.flags.is_empty() { "none".into() } else { esc(&p.flags.join(", ")) };
            let cited = if cited.is_empty() { "none".into() } else { cited.join("<br>") };
            row(
                out,
                &[
                    p.seq.to_string(),
                    time(p.at),
                    esc(&p.service),
                    format!("{}% &rarr; {}%", p.from_percent, p.to_percent),
                    flags,
                    cited,
                    answer(p.answer),
                ],
            )?;
        }
        writeln!(out, "</tbody></table>")?;
    }

    writeln!(out, "<h3>Health at the end of each bake</h3>")?;
    if r.bakes.is_empty() {
        writeln!(out, "<p>No bake ended.</p>")?;
    } else {
        table_head(out, &["seq", "at", "service", "bake", "ended by", "check", "value", "verdict", "limits"])?;
        for b in &r.bakes {
            let ended = if b.promoted { "promote" } else { "healthy hold" };
            let lead = [
                b.seq.to_string(),
                time(b.at),
                esc(b.service.as_deref().unwrap_or("-")),
                esc(&b.what),
                ended.to_string(),
            ];
            if b.health.is_empty() {
                let mut cells = lead.to_vec();
                let missing = if b.left_out { super::markdown::LEFT_OUT } else { "not recorded" };
                cells.extend(["-".into(), missing.into(), "-".into(), "-".into()]);
                row(out, &cells)?;
            }
            for e in &b.health {
                let check = match (&e.service, &b.service) {
                    (Some(s), None) => format!("{}: {}", esc(s), esc(&e.check)),
                    _ => esc(&e.check),
                };
                let mut cells = lead.to_vec();
                cells.extend([
                    check,
                    format!("<span class=\"value\">{}</span>", esc(&shown_value(e))),
                    e.verdict.map_or("-".into(), verdict_name),
                    esc(&e.limits()),
                ]);
                row(out, &cells)?;
            }
        }
        writeln!(out, "</tbody></table>")?;
    }

    writeln!(out, "<h3>Steps</h3>")?;
    table_head(out, &["seq", "at", "service", "change", "cause"])?;
    for e in &r.steps {
        row(
            out,
            &[e.seq.to_string(), time(e.at), esc(e.service.as_deref().unwrap_or("-")), esc(&e.change), esc(&e.cause)],
        )?;
    }
    writeln!(out, "</tbody></table>")?;

    writeln!(out, "<h3>Failures and rollbacks</h3>")?;
    list(
        out,
        r.failures.iter().map(|e| {
            format!(
                "#{} {} {}: {}: {}",
                e.seq,
                time(e.at),
                esc(e.service.as_deref().unwrap_or("-")),
                esc(&e.change),
                esc(&e.cause)
            )
        }),
    )?;
    writeln!(out, "<h3>Operator commands</h3>")?;
    list(
        out,
        r.commands.iter().map(|c| {
            format!(
                "#{} {} {} on {} by <strong>{}</strong>{}",
                c.seq,
                time(c.at),
                c.command,
                esc(&c.scope),
                esc(&c.by),
                c.detail.as_ref().map(|d| format!(": {}", esc(d))).unwrap_or_default()
            )
        }),
    )?;
    writeln!(out, "<h3>Accepted failures</h3>")?;
    list(
        out,
        r.accepted_failures.iter().map(|a| {
            format!(
                "#{} {} wave {} completed by a promote of <strong>{}</strong>, accepting failed regions {}",
                a.seq,
                time(a.at),
                esc(a.wave.as_deref().unwrap_or("-")),
                esc(&a.by),
                esc(&a.regions.join(", "))
            )
        }),
    )?;
    writeln!(out, "</section>")
}

fn list(out: &mut String, items: impl Iterator<Item = String>) -> std::fmt::Result {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return writeln!(out, "<p>None.</p>");
    }
    writeln!(out, "<ul>")?;
    for item in items {
        writeln!(out, "<li>{item}</li>")?;
    }
    writeln!(out, "</ul>")
}
