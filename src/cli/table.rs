//! Plain-text tables for people: columns aligned by display width, so Korean names (two
//! columns per syllable) line up with ASCII.

use unicode_width::UnicodeWidthStr;

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// A row; its cells' control characters are replaced (text from mail or a server must not
    /// drive the operator's terminal, nor break the columns with a line feed).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.width()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.width());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(self.rows.iter()) {
            let mut s = String::new();
            for (i, c) in line.iter().enumerate().take(cols) {
                s.push_str(c);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(widths[i] - c.width() + 2));
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `s` with every control character (C0, DEL, C1: ESC, BEL, CR, LF, …) replaced by U+FFFD.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_cells_align_by_display_width() {
        let mut t = Table::new(&["ID", "NAME", "STAGE"]);
        t.row(vec!["a".into(), "에이".into(), "applied".into()]);
        t.row(vec!["bb".into(), "xyz".into(), "live".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        let column_of = |line: &str, word: &str| line[..line.find(word).unwrap()].width();
        // NAME is 4 wide ("에이" too), so STAGE starts at column 2+2 + 4+2 = 10 on every line.
        assert_eq!(column_of(lines[0], "STAGE"), 10);
        assert_eq!(column_of(lines[1], "applied"), 10);
        assert_eq!(column_of(lines[2], "live"), 10);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut t = Table::new(&["NAME"]);
        t.row(vec!["\u{1b}]0;pwned\u{7}\u{1b}[2J에이씨미\r\nx\u{9b}".into()]);
        let out = t.render();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert_eq!(out.lines().count(), 2, "the name stays on its line: {out:?}");
        assert!(out.contains("에이씨미"));
    }
}
