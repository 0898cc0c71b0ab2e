//! A line diff of two texts (two versions of a directive): which lines the newer one keeps,
//! adds and removes, by the longest common subsequence of lines.
//!
//! The LCS table costs `(n+1)·(m+1)` cells for `n` and `m` lines, and a directive may hold
//! 100,000 characters (up to 100,000 one-character lines), so the table is bounded: the lines
//! both texts share at their start and end are matched first for nothing, and if the changed
//! middle still needs more than [`MAX_CELLS`] cells it is shown replaced as a whole (every old
//! line removed, every new line added), which is true, only less precise. A page never costs
//! more than a few MiB or a few milliseconds, whatever the texts.

/// Cells of the LCS table at most (4 bytes each: 4 MiB). 1,000 changed lines against 1,000
/// changed lines still get a line-by-line alignment; directives are far shorter.
pub const MAX_CELLS: usize = 1 << 20;

/// What happened to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    Added,
    Removed,
}

/// One line of the diff, with its 1-based number in the old text, the new text, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub change: Change,
    pub old: Option<usize>,
    pub new: Option<usize>,
    /// The line without its line break.
    pub text: String,
}

impl Line {
    /// The CSS class of the line's row.
    pub fn class(&self) -> &'static str {
        match self.change {
            Change::Same => "same",
            Change::Added => "add",
            Change::Removed => "del",
        }
    }

    /// The sign shown before the line, as in a unified diff.
    pub fn sign(&self) -> &'static str {
        match self.change {
            Change::Same => "",
            Change::Added => "+",
            Change::Removed => "−",
        }
    }

    pub fn old_number(&self) -> String {
        self.old.map(|n| n.to_string()).unwrap_or_default()
    }

    pub fn new_number(&self) -> String {
        self.new.map(|n| n.to_string()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub lines: Vec<Line>,
    /// The changed middle was too large to align and is shown replaced as a whole.
    pub whole: bool,
    /// Said when only the line break at the end differs: the last lines then look alike but are
    /// shown changed, and this says why.
    pub newline_note: Option<&'static str>,
}

impl Diff {
    pub fn added(&self) -> usize {
        self.count(Change::Added)
    }

    pub fn removed(&self) -> usize {
        self.count(Change::Removed)
    }

    /// Whether the two texts are the same.
    pub fn unchanged(&self) -> bool {
        self.lines.iter().all(|l| l.change == Change::Same)
    }

    fn count(&self, change: Change) -> usize {
        self.lines.iter().filter(|l| l.change == change).count()
    }
}

/// The line diff from `old` to `new`, its LCS table bounded by [`MAX_CELLS`].
pub fn lines(old: &str, new: &str) -> Diff {
    lines_within(old, new, MAX_CELLS)
}

/// [`lines`] with the table bounded by `max_cells` (the tests use small bounds).
fn lines_within(old: &str, new: &str, max_cells: usize) -> Diff {
    // Lines keep their line break, so a text that only gains one at its end differs.
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (middle_a, middle_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut steps = Vec::with_capacity(a.len() + b.len());
    steps.extend(std::iter::repeat_n(Change::Same, prefix));
    let aligned = align(middle_a, middle_b, max_cells);
    let whole = aligned.is_none();
    steps.extend(aligned.unwrap_or_else(|| replaced(middle_a.len(), middle_b.len())));
    steps.extend(std::iter::repeat_n(Change::Same, suffix));
    Diff {
        lines: numbered(&a, &b, &steps),
        whole,
        newline_note: newline_note(old, new),
    }
}

/// The steps from `a` to `b` by their longest common subsequence, or `None` when its table
/// would need more than `max_cells` cells.
fn align(a: &[&str], b: &[&str], max_cells: usize) -> Option<Vec<Change>> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return Some(replaced(n, m));
    }
    let width = m + 1;
    let cells = (n + 1).checked_mul(width).filter(|&c| c <= max_cells)?;
    // table[i * width + j]: the length of the LCS of a[i..] and b[j..].
    let mut table = vec![0u32; cells];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i] == b[j] {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let mut steps = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            steps.push(Change::Same);
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            // Removals first: a changed line reads as its old text, then its new one.
            steps.push(Change::Removed);
            i += 1;
        } else {
            steps.push(Change::Added);
            j += 1;
        }
    }
    steps.extend(replaced(n - i, m - j));
    Some(steps)
}

/// `n` lines removed, then `m` lines added.
fn replaced(n: usize, m: usize) -> Vec<Change> {
    let mut steps = vec![Change::Removed; n];
    steps.extend(std::iter::repeat_n(Change::Added, m));
    steps
}

/// The lines of `a` and `b` walked by `steps`, numbered.
fn numbered(a: &[&str], b: &[&str], steps: &[Change]) -> Vec<Line> {
    let (mut old, mut new) = (a.iter().enumerate(), b.iter().enumerate());
    let mut lines = Vec::with_capacity(steps.len());
    for &change in steps {
        let (from_old, from_new) = match change {
            Change::Same => (old.next(), new.next()),
            Change::Removed => (old.next(), None),
            Change::Added => (None, new.next()),
        };
        let text = match (from_old, from_new) {
            (Some((_, text)), _) | (None, Some((_, text))) => *text,
            // Steps never outrun their lines; if they did, the rest is not shown.
            (None, None) => break,
        };
        lines.push(Line {
            change,
            old: from_old.map(|(i, _)| i + 1),
            new: from_new.map(|(i, _)| i + 1),
            text: shown(text).to_string(),
        });
    }
    lines
}

/// A line as shown: without its line break (`\n` or `\r\n`).
fn shown(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn newline_note(old: &str, new: &str) -> Option<&'static str> {
    if old.is_empty() || new.is_empty() || old.ends_with('\n') == new.ends_with('\n') {
        None
    } else if new.ends_with('\n') {
        Some("The newer text adds a line break at its end.")
    } else {
        Some("The newer text removes the line break at its end.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diff as `(sign, text)` pairs, compact to compare.
    fn signs(diff: &Diff) -> Vec<(&'static str, &str)> {
        diff.lines
            .iter()
            .map(|l| {
                let sign = match l.change {
                    Change::Same => "=",
                    Change::Added => "+",
                    Change::Removed => "-",
                };
                (sign, l.text.as_str())
            })
            .collect()
    }

    #[test]
    fn identical_texts_have_only_unchanged_lines() {
        let diff = lines("one\ntwo\nthree\n", "one\ntwo\nthree\n");
        assert!(diff.unchanged());
        assert_eq!(signs(&diff), [("=", "one"), ("=", "two"), ("=", "three")]);
        assert_eq!((diff.added(), diff.removed(), diff.whole), (0, 0, false));
        assert_eq!(diff.newline_note, None);
    }

    #[test]
    fn a_pure_addition_adds_lines_only() {
        let diff = lines("one\ntwo\n", "zero\none\ntwo\nthree\n");
        assert_eq!(
            signs(&diff),
            [("+", "zero"), ("=", "one"), ("=", "two"), ("+", "three")]
        );
        assert_eq!((diff.added(), diff.removed()), (2, 0));
        assert_eq!(diff.lines[0].new, Some(1));
        assert_eq!(diff.lines[0].old, None);
        assert_eq!(diff.lines[3].new, Some(4));
    }

    #[test]
    fn a_pure_removal_removes_lines_only() {
        let diff = lines("one\ntwo\nthree\n", "one\nthree\n");
        assert_eq!(signs(&diff), [("=", "one"), ("-", "two"), ("=", "three")]);
        assert_eq!((diff.added(), diff.removed()), (0, 1));
        assert_eq!((diff.lines[1].old, diff.lines[1].new), (Some(2), None));
        assert_eq!((diff.lines[2].old, diff.lines[2].new), (Some(3), Some(2)));
    }

    #[test]
    fn a_changed_middle_line_is_removed_then_added() {
        let diff = lines("one\ntwo\nthree\n", "one\nTWO\nthree\n");
        assert_eq!(signs(&diff), [("=", "one"), ("-", "two"), ("+", "TWO"), ("=", "three")]);
        assert!(!diff.whole);
    }

    #[test]
    fn scattered_changes_are_aligned_on_the_common_lines() {
        let diff = lines("a\nb\nc\nd\ne\n", "a\nx\nc\ne\ny\n");
        assert_eq!(
            signs(&diff),
            [
                ("=", "a"),
                ("-", "b"),
                ("+", "x"),
                ("=", "c"),
                ("-", "d"),
                ("=", "e"),
                ("+", "y")
            ]
        );
    }

    #[test]
    fn empty_texts_have_no_lines_and_against_text_are_all_added_or_removed() {
        assert_eq!(lines("", "").lines, []);
        assert!(lines("", "").unchanged());
        assert_eq!(signs(&lines("", "a\nb")), [("+", "a"), ("+", "b")]);
        assert_eq!(signs(&lines("a\nb\n", "")), [("-", "a"), ("-", "b")]);
        assert_eq!(lines("", "a").newline_note, None);
    }

    #[test]
    fn a_line_break_added_at_the_end_is_shown_and_explained() {
        let diff = lines("one\ntwo", "one\ntwo\n");
        assert_eq!(signs(&diff), [("=", "one"), ("-", "two"), ("+", "two")]);
        assert_eq!(diff.newline_note, Some("The newer text adds a line break at its end."));
        let back = lines("one\ntwo\n", "one\ntwo");
        assert_eq!(
            back.newline_note,
            Some("The newer text removes the line break at its end.")
        );
    }

    #[test]
    fn crlf_line_breaks_are_not_shown() {
        let diff = lines("one\r\ntwo\r\n", "one\r\ntwo\r\n");
        assert_eq!(signs(&diff), [("=", "one"), ("=", "two")]);
    }

    #[test]
    fn above_the_bound_the_changed_middle_is_replaced_whole() {
        // A middle of 3 and 3 lines needs a 16-cell table: refused under a bound of 15.
        let (old, new) = ("keep\na\nb\nc\nend\n", "keep\nb\nc\nx\nend\n");
        let diff = lines_within(old, new, 15);
        assert!(diff.whole);
        assert_eq!(
            signs(&diff),
            [
                ("=", "keep"),
                ("-", "a"),
                ("-", "b"),
                ("-", "c"),
                ("+", "b"),
                ("+", "c"),
                ("+", "x"),
                ("=", "end")
            ]
        );
        // Within the bound, the same texts align.
        let aligned = lines_within(old, new, 16);
        assert!(!aligned.whole);
        assert_eq!(
            signs(&aligned),
            [
                ("=", "keep"),
                ("-", "a"),
                ("=", "b"),
                ("=", "c"),
                ("+", "x"),
                ("=", "end")
            ]
        );
    }

    #[test]
    fn the_largest_directives_stay_within_the_bound() {
        // 100,000 characters each: 50,000 lines, every one changed. The table would need 2.5
        // billion cells; the diff falls back to a whole replacement instead.
        let old = "a\n".repeat(50_000);
        let new = "b\n".repeat(50_000);
        let diff = lines(&old, &new);
        assert!(diff.whole);
        assert_eq!((diff.removed(), diff.added()), (50_000, 50_000));
        // One changed line among as many is still found exactly (prefix and suffix are free).
        let mut one = old.clone();
        one.replace_range(50_000..50_001, "z");
        let diff = lines(&old, &one);
        assert!(!diff.whole);
        assert_eq!((diff.removed(), diff.added()), (1, 1));
        assert_eq!(diff.lines.len(), 50_001);
    }
}
