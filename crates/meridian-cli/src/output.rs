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
    fn columns_align_without_trailing_spaces() {
        let rows = vec![vec!["A".to_string(), "BB".to_string()], vec!["CCC".to_string(), String::new()]];
        assert_eq!(super::table(&rows, "  "), "  A    BB\n  CCC\n");
    }
}
