//! The report as Markdown, for pasting into a ticket.

use std::fmt::Write;

use super::{ApprovalInForce, Bake, RegionReport, Report, scope_of, shown_value, time, verdict_name};

/// Render `report` as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = write_report(&mut out, report);
    out
}

/// A table cell: pipes escaped, on one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write_report(out: &mut String, report: &Report) -> std::fmt::Result {
    let log = &report.log;
    writeln!(out, "# Evidence report: {}", report.plan)?;
    writeln!(out)?;
    writeln!(
        out,
        "- Audit records: {} (seq {} to {}, {} to {}){}",
        log.records,
        log.first_seq,
        log.last_seq,
        time(log.first_at),
        time(log.last_at),
        match log.gap {
            Some((expected, got)) => format!("; **not gapless: expected seq {expected}, found {got}**"),
            None => "; gapless".into(),
        }
    )?;
    writeln!(out, "- Audit chain head: {}", chain_head(report))?;
    writeln!(
        out,
        "- **Traffic without its approvals: {}** ({})",
        report.traffic_without_approvals.as_str(),
        report.regions.iter().map(|r| r.region.as_str()).collect::<Vec<_>>().join(", ")
    )?;
    for region in &report.regions {
        writeln!(out)?;
        write_region(out, region)?;
    }
    Ok(())
}

pub(super) fn chain_head(report: &Report) -> String {
    match (&report.chain_head, &report.chain_broken) {
        (_, Some(broken)) => format!("BROKEN: {broken}"),
        (Some(head), None) => {
            format!("{head} (verified, {} records; keep it: `meridian audit verify --anchor {head}`)", head.entries)
        }
        (None, None) => "not available".into(),
    }
}

fn write_region(out: &mut String, r: &RegionReport) -> std::fmt::Result {
    writeln!(out, "## Region {}{}", r.region, r.wave.as_ref().map(|w| format!(" (wave {w})")).unwrap_or_default())?;
    writeln!(out)?;
    let services: Vec<String> =
        r.services.iter().map(|s| format!("{} {} {}%", s.service, s.phase, s.percent)).collect();
    writeln!(out, "- Services: {}", if services.is_empty() { "none moved".into() } else { services.join(", ") })?;
    writeln!(out, "- First traffic: {}", r.first_traffic.map_or("never".into(), time))?;
    writeln!(out, "- **Traffic without its approvals: {}**", r.traffic_without_approvals.as_str())?;
    writeln!(out)?;

    writeln!(out, "### Approvals in force at first traffic")?;
    writeln!(out)?;
    if r.approvals_at_first_traffic.is_empty() {
        writeln!(out, "None cited (the region needed no approval, or never received traffic).")?;
    } else {
        writeln!(out, "| approval | flag | granted by | reference | granted at | expires | scope | signature |")?;
        writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for a in &r.approvals_at_first_traffic {
            writeln!(out, "{}", approval_row(a))?;
        }
        writeln!(out)?;
        writeln!(out, "History of these approvals:")?;
        writeln!(out)?;
        for a in &r.approvals_at_first_traffic {
            for e in &a.history {
                let reason = e.reason.as_ref().map(|x| format!(": {x}")).unwrap_or_default();
                writeln!(out, "- {}: {} at {} by {} ({}){reason}", a.name, wire(&e.kind), time(e.at), e.by, e.source)?;
            }
        }
    }
    writeln!(out)?;

    writeln!(out, "### Proof: every raise of traffic cites approvals that held")?;
    writeln!(out)?;
    if r.proof.is_empty() {
        writeln!(out, "No record raised traffic here.")?;
    } else {
        writeln!(
            out,
            "| seq | at | service | traffic | flags needed | approvals cited (valid then?) | traffic without approvals |"
        )?;
        writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |")?;
        for p in &r.proof {
            let cited: Vec<String> = p
                .approvals
                .iter()
                .map(|a| match &a.problem {
                    None => format!("{} (valid)", a.name),
                    Some(problem) => format!("{} (NOT valid: {problem})", a.name),
                })
                .collect();
            writeln!(
                out,
                "| {} | {} | {} | {}% -> {}% | {} | {} | {} |",
                p.seq,
                time(p.at),
                p.service,
                p.from_percent,
                p.to_percent,
                cell(&or_none(&p.flags.join(", "))),
                cell(&or_none(&cited.join("; "))),
                p.answer.as_str()
            )?;
        }
    }
    writeln!(out)?;

    writeln!(out, "### Health at the end of each bake")?;
    writeln!(out)?;
    if r.bakes.is_empty() {
        writeln!(out, "No bake ended.")?;
    } else {
        writeln!(out, "| seq | at | service | bake | ended by | check | value | verdict | limits |")?;
        writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for b in &r.bakes {
            write_bake(out, b)?;
        }
    }
    writeln!(out)?;

    writeln!(out, "### Steps")?;
    writeln!(out)?;
    writeln!(out, "| seq | at | service | change | cause |")?;
    writeln!(out, "| --- | --- | --- | --- | --- |")?;
    for e in &r.steps {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            e.seq,
            time(e.at),
            e.service.as_deref().unwrap_or("-"),
            cell(&e.change),
            cell(&e.cause)
        )?;
    }
    writeln!(out)?;

    writeln!(out, "### Failures and rollbacks")?;
    writeln!(out)?;
    if r.failures.is_empty() {
        writeln!(out, "None.")?;
    }
    for e in &r.failures {
        writeln!(
            out,
            "- #{} {} {}: {}: {}",
            e.seq,
            time(e.at),
            e.service.as_deref().unwrap_or("-"),
            e.change,
            e.cause
        )?;
    }
    writeln!(out)?;

    writeln!(out, "### Operator commands")?;
    writeln!(out)?;
    if r.commands.is_empty() {
        writeln!(out, "None.")?;
    }
    for c in &r.commands {
        let detail = c.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default();
        writeln!(out, "- #{} {} {} on {} by {}{detail}", c.seq, time(c.at), c.command, c.scope, c.by)?;
    }
    writeln!(out)?;

    writeln!(out, "### Accepted failures")?;
    writeln!(out)?;
    if r.accepted_failures.is_empty() {
        writeln!(out, "None.")?;
    }
    for a in &r.accepted_failures {
        writeln!(
            out,
            "- #{} {} wave {} completed by a promote of {}, accepting failed regions {}",
            a.seq,
            time(a.at),
            a.wave.as_deref().unwrap_or("-"),
            a.by,
            a.regions.join(", ")
        )?;
    }
    Ok(())
}

fn approval_row(a: &ApprovalInForce) -> String {
    let Some(record) = &a.record else {
        return format!("| {} | ? | ? | ? | ? | ? | ? | not in the approval history |", cell(&a.name));
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        cell(&a.name),
        cell(&record.flag),
        cell(&record.granted_by),
        cell(record.reference.as_deref().unwrap_or("-")),
        record.granted_at.map_or("-".into(), time),
        record.expires.map_or("never".into(), time),
        cell(&scope_of(&record.scope)),
        cell(&a.signature)
    )
}

/// A wave bake whose record left this region's evidence out (`Bake::left_out`).
pub(super) const LEFT_OUT: &str = "left out of the wave's record (past its limit); see the last steps above";

fn write_bake(out: &mut String, b: &Bake) -> std::fmt::Result {
    let ended = if b.promoted { "promote" } else { "healthy hold" };
    let service = b.service.as_deref().unwrap_or("-");
    if b.health.is_empty() {
        return writeln!(
            out,
            "| {} | {} | {service} | {} | {ended} | - | {} | - | - |",
            b.seq,
            time(b.at),
            cell(&b.what),
            if b.left_out { LEFT_OUT } else { "not recorded" }
        );
    }
    for e in &b.health {
        let check = match (&e.region, &e.service) {
            (Some(_), Some(s)) if b.service.is_none() => format!("{s}: {}", e.check),
            _ => e.check.clone(),
        };
        writeln!(
            out,
            "| {} | {} | {service} | {} | {ended} | {} | {} | {} | {} |",
            b.seq,
            time(b.at),
            cell(&b.what),
            cell(&check),
            shown_value(e),
            e.verdict.map_or("-".into(), verdict_name),
            e.limits()
        )?;
    }
    Ok(())
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "none".into() } else { text.to_string() }
}

/// `granted`, `revoked`: as written in JSON.
pub(super) fn wire<T: serde::Serialize>(value: &T) -> String {
    crate::audit::wire_name(value)
}
