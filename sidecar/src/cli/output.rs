//! How the CLI prints answers: aligned columns for people, or the API's JSON for scripts (`--json`).

use serde_json::Value;

/// A cell as people read it: strings bare, null empty, arrays comma-joined.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Rows as aligned columns under a header; long cells (content) are cut at 60 characters.
pub fn table(rows: &[Value], columns: &[&str]) -> String {
    const WIDEST: usize = 60;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    let text = cell(&row[*c]).replace(['\n', '\t'], " ");
                    if text.chars().count() > WIDEST {
                        format!("{}…", text.chars().take(WIDEST - 1).collect::<String>())
                    } else {
                        text
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}", w = *w))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(columns.to_vec())];
    out.extend(cells.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

pub struct Printer {
    pub json: bool,
}

impl Printer {
    pub fn object(&self, value: &Value) {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    }

    /// A list, and on stderr how to get the next page when there is one.
    pub fn list(&self, rows: &[Value], next_cursor: Option<String>, columns: &[&str]) {
        if self.json {
            for row in rows {
                println!("{row}");
            }
        } else {
            println!("{}", table(rows, columns));
        }
        if let Some(cursor) = next_cursor {
            eprintln!("more rows: --cursor {cursor} (or --all)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_cut() {
        let rows = [
            json!({"id": "a", "name": "first", "tags": ["x", "y"], "n": null}),
            json!({"id": "bb", "name": "x".repeat(80), "tags": [], "n": 3}),
        ];
        let out = table(&rows, &["id", "name", "tags", "n"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("id  name{}  tags  n", " ".repeat(56)));
        assert!(lines[1].starts_with("a   first"));
        assert!(lines[1].contains("x,y"));
        assert!(lines[2].contains(&format!("{}…", "x".repeat(59))));
        assert!(lines[2].ends_with('3'));
    }
}
