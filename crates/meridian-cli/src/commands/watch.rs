//! `meridian status [PLAN] --watch`: a live view that redraws in place.
//!
//! With PLAN, a compact grid: one row per region, one column per service, each cell the
//! unit's state as a mark, its traffic and, when it waits, a word for what on (`approval
//! eu-go`, `bake 40s`, `window`). Without PLAN, the plan list. On a terminal the screen is
//! redrawn every `--interval`, each line cut to the terminal's width, in colour unless
//! `NO_COLOR` is set or `--color never`; off a terminal (a pipe, a file) a frame is printed
//! only when something in it changed, without colour unless `--color always`. Runs until
//! Ctrl-C; a lost connection is shown in the frame and retried.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_core::state::{UnitPhase, UnitState, WaitReason};
use serde_json::Value;

use super::status::{Args, PlanView, SummaryView, list_table};
use crate::client::{Client, ClientError, exit, segment};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    Always,
    Never,
}

/// Whether to colour: `always` and `never` say so; `auto` colours a terminal without
/// `NO_COLOR` (any non-empty value, as no-color.org asks).
pub fn use_colour(choice: ColorChoice, terminal: bool, no_color: Option<&str>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && no_color.is_none_or(str::is_empty),
    }
}

/// One cell: its text and its colour (an ANSI SGR code), if any.
struct Cell {
    text: String,
    colour: Option<&'static str>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Self {
        Cell { text: text.into(), colour: None }
    }
}

/// A short word for what a unit waits on, with a countdown where it has a time.
fn waiting_word(waiting: &WaitReason, now: DateTime<Utc>) -> String {
    let left = |until: &DateTime<Utc>| span((*until - now).num_seconds().max(0));
    match waiting {
        WaitReason::Approval { flag, .. } => format!("approval {flag}"),
        WaitReason::StepBake { until } | WaitReason::WaveBake { until, .. } => format!("bake {}", left(until)),
        WaitReason::Window { opens_at: Some(at) } => format!("window {}", left(at)),
        WaitReason::Window { opens_at: None } => "window".into(),
        WaitReason::Wave { .. } => "earlier wave".into(),
        WaitReason::WaveHalted { .. } => "wave halted".into(),
        WaitReason::Dependency { services } => format!("after {}", services.join(",")),
        WaitReason::Parallelism { .. } => "maxParallel".into(),
        WaitReason::Actuation { percent } => format!("confirm {percent}%"),
        WaitReason::Drift { observed, .. } => format!("drift {observed}%"),
        WaitReason::Health { .. } => "health".into(),
        WaitReason::Paused { .. } => "paused".into(),
        WaitReason::Aborted => "aborted".into(),
        WaitReason::RegionFailed { service } => format!("{service} failed"),
        WaitReason::Frozen { .. } => "freeze".into(),
        #[allow(unreachable_patterns, reason = "reasons added later read as blocked")]
        _ => "blocked".into(),
    }
}

/// `40s`, `12m`, `3h05m`, `2d4h`.
fn span(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn unit_cell(u: &UnitState, now: DateTime<Utc>) -> Cell {
    let (mark, colour) = match u.phase {
        UnitPhase::Enabled => ("✓", "32"),
        UnitPhase::Progressing => ("▲", "36"),
        UnitPhase::Blocked => ("■", "33"),
        UnitPhase::Failed => ("✗", "31"),
        UnitPhase::RolledBack => ("↺", "31"),
        UnitPhase::Paused => ("‖", "35"),
        UnitPhase::Pending => ("·", "2"),
    };
    let mut text = format!("{mark} {}%", u.percent);
    match (&u.waiting, u.phase) {
        (_, UnitPhase::Failed) => text.push_str(" failed"),
        (_, UnitPhase::RolledBack) => text.push_str(" rolled back"),
        (_, UnitPhase::Enabled | UnitPhase::Pending) => {}
        (Some(w), _) => {
            text.push(' ');
            text.push_str(&waiting_word(w, now));
        }
        (None, _) => {}
    }
    Cell { text, colour: Some(colour) }
}

/// Rows of cells as aligned lines, each cut to `width` characters (cells that do not fit are
/// left out and the line ends with `…`).
fn lay_out(rows: &[Vec<Cell>], colour: bool, width: Option<usize>) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.text.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let (mut line, mut used) = (String::new(), 0);
        for (c, cell) in row.iter().enumerate() {
            let pad = if c + 1 < row.len() { widths[c] - cell.text.chars().count() + 2 } else { 0 };
            let need = cell.text.chars().count() + pad;
            if width.is_some_and(|w| used + need > w && used + cell.text.chars().count() > w.saturating_sub(1)) {
                line.push('…');
                break;
            }
            match (colour, cell.colour) {
                (true, Some(code)) => {
                    let _ = write!(line, "\x1b[{code}m{}\x1b[0m", cell.text);
                }
                _ => line.push_str(&cell.text),
            }
            line.push_str(&" ".repeat(pad));
            used += need;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One frame of a plan: a header line, the waves, then the grid.
pub fn plan_frame(view: &PlanView, now: DateTime<Utc>, colour: bool, width: Option<usize>) -> String {
    let enabled = view.state.units.iter().filter(|u| u.phase == UnitPhase::Enabled).count();
    let mut rows = vec![vec![
        Cell::plain(format!("{}: {}", view.name, view.outcome.summary)),
        Cell::plain(format!("{enabled}/{} enabled", view.state.units.len())),
    ]];
    let waves: Vec<String> = view.state.waves.iter().map(|w| format!("{} {}", w.name, w.phase)).collect();
    rows.push(vec![Cell::plain(format!("waves: {}", waves.join(", ")))]);
    let mut out = lay_out(&rows, colour, width);
    out.push('\n');
    let services: Vec<&str> = {
        let mut seen: Vec<&str> = Vec::new();
        for u in view.state.units.iter().chain(&view.state.departing) {
            if !seen.contains(&u.service.as_str()) {
                seen.push(&u.service);
            }
        }
        seen
    };
    let mut grid = vec![
        ["WAVE", "REGION"].into_iter().chain(services.iter().copied()).map(|h| Cell::plain(h.to_uppercase())).collect(),
    ];
    let mut last_wave = "";
    for r in &view.regions {
        let wave = if r.wave == last_wave { String::new() } else { r.wave.clone() };
        last_wave = &r.wave;
        let mut row = vec![Cell::plain(wave), Cell::plain(r.name.clone())];
        for s in &services {
            row.push(match view.state.units.iter().find(|u| u.region == r.name && u.service == *s) {
                Some(u) => unit_cell(u, now),
                None => Cell::plain("-"),
            });
        }
        grid.push(row);
    }
    // Units an edit removed, until their targets are seen at 0 % (they are in no wave).
    let mut gone: Vec<&str> = Vec::new();
    for u in &view.state.departing {
        if !gone.contains(&u.region.as_str()) {
            gone.push(&u.region);
        }
    }
    for (i, region) in gone.iter().enumerate() {
        let mut row = vec![Cell::plain(if i == 0 { "(removed)" } else { "" }), Cell::plain(*region)];
        for s in &services {
            row.push(match view.state.departing.iter().find(|u| u.region == *region && u.service == *s) {
                Some(u) => Cell::plain(format!("departing {}%", u.percent)),
                None => Cell::plain("-"),
            });
        }
        grid.push(row);
    }
    out.push_str(&lay_out(&grid, colour, width));
    out
}

/// Watch until interrupted (or a refusal: exit 1 for an unknown plan, 3 otherwise).
pub async fn run(client: &Client, args: &Args) -> i32 {
    let terminal = std::io::stdout().is_terminal();
    let colour = use_colour(args.color, terminal, std::env::var("NO_COLOR").ok().as_deref());
    let interval = Duration::from_millis(args.interval.as_millis().max(100));
    let mut last = String::new();
    loop {
        let now = Utc::now();
        let width = if terminal { crate::output::terminal_width() } else { None };
        let body = match frame(client, args, now, colour, width).await {
            Ok(body) => body,
            Err(e) if e.is_transient() => format!("{e}; retrying every {}\n", span_ms(interval)),
            Err(e) => {
                e.report("status");
                return exit::USAGE;
            }
        };
        if terminal {
            let header = format!(
                "every {}: meridian status --watch  {}\n\n",
                span_ms(interval),
                now.format("%Y-%m-%d %H:%M:%S UTC")
            );
            print!("\x1b[H\x1b[2J{header}{body}");
        } else if body != last {
            println!("{} UTC", now.format("%Y-%m-%d %H:%M:%S"));
            print!("{body}");
            println!();
        }
        let _ = std::io::stdout().flush();
        last = body;
        tokio::time::sleep(interval).await;
    }
}

fn span_ms(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

async fn frame(
    client: &Client,
    args: &Args,
    now: DateTime<Utc>,
    colour: bool,
    width: Option<usize>,
) -> Result<String, ClientError> {
    match &args.plan {
        Some(name) => {
            let raw: Value = client.get(&format!("/plans/{}", segment(name))).await?;
            let view: PlanView = serde_json::from_value(raw).map_err(|e| ClientError::Decode {
                server: client.server().to_string(),
                message: format!("GET /plans/{name}: {e}"),
            })?;
            Ok(plan_frame(&view, now, colour, width))
        }
        None => {
            let raw: Value = client.get("/plans").await?;
            let plans: Vec<SummaryView> = serde_json::from_value(raw["plans"].clone()).map_err(|e| {
                ClientError::Decode { server: client.server().to_string(), message: format!("GET /plans: {e}") }
            })?;
            Ok(list_table(&plans, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        assert!(use_colour(ColorChoice::Auto, true, None));
        assert!(use_colour(ColorChoice::Auto, true, Some("")));
        assert!(!use_colour(ColorChoice::Auto, true, Some("1")));
        assert!(!use_colour(ColorChoice::Auto, false, None));
        assert!(use_colour(ColorChoice::Always, false, Some("1")));
        assert!(!use_colour(ColorChoice::Never, true, None));
    }

    #[test]
    fn lines_are_cut_to_the_width_and_marked() {
        let rows = vec![vec![Cell::plain("region"), Cell::plain("aaaaaaaaaa"), Cell::plain("bbbbbbbbbb")]];
        assert_eq!(lay_out(&rows, false, None), "region  aaaaaaaaaa  bbbbbbbbbb\n");
        let cut = lay_out(&rows, false, Some(24));
        assert_eq!(cut, "region  aaaaaaaaaa  …\n");
        assert!(cut.trim_end().chars().count() <= 24);
        let coloured = lay_out(&[vec![Cell { text: "✓ 100%".into(), colour: Some("32") }]], true, None);
        assert_eq!(coloured, "\x1b[32m✓ 100%\x1b[0m\n");
    }

    #[test]
    fn spans_read_short() {
        assert_eq!([span(40), span(600), span(3900), span(190_000)], ["40s", "10m", "1h05m", "2d4h"]);
    }
}
