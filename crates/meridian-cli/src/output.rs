//! Output shared by the commands: text tables, and data as JSON or YAML (`-o json|yaml`).

use crate::commands::Format;

/// Print `value` as `format` asks for data: pretty JSON (also the fallback for a text format)
/// or YAML.
pub fn data(format: Format, value: &impl serde::Serialize) {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value).unwrap_or_default(),
        _ => serde_json::to_string_pretty(value).map(|t| t + "\n").unwrap_or_default(),
    };
    print!("{text}");
}

/// Each line of `text` cut to `width` characters (the last one `…`); as it is without a width.
pub fn fit(text: &str, width: Option<usize>) -> String {
    let Some(width) = width.filter(|w| *w > 1) else { return text.to_string() };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if body.chars().count() > width {
            out.extend(body.chars().take(width - 1));
            out.push('…');
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The terminal's width, when stdout is one (else `COLUMNS`, else none).
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only writes the winsize struct passed; a failure leaves it zeroed.
    #[allow(unsafe_code, reason = "the one ioctl that reads the terminal's size")]
    let columns = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0).then_some(size.ws_col)
    };
    columns.filter(|c| *c > 0).map(usize::from).or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
}

/// Left-aligned columns, two spaces apart, each line indented by `indent`, no trailing spaces.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_cut_to_the_width() {
        assert_eq!(super::fit("abcdef\nab\n", Some(4)), "abc…\nab\n");
        assert_eq!(super::fit("abcdef", None), "abcdef");
    }

    #[test]
    fn columns_align_without_trailing_spaces() {
        let rows = vec![vec!["A".to_string(), "BB".to_string()], vec!["CCC".to_string(), String::new()]];
        assert_eq!(super::table(&rows, "  "), "  A    BB\n  CCC\n");
    }
}
