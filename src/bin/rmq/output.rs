//! How results reach the user: aligned tables and `Label: value` blocks for people, JSON for
//! scripts, and progress bars on stderr.
//!
//! Tables fit the terminal: when stdout is a terminal narrower than a table, the columns
//! marked shrinkable (names: topics, brokers, groups) are shortened with an ellipsis in the
//! middle, which keeps the distinctive ends of generated names; if the table still does not
//! fit, each row is printed as a block of `Heading: value` lines. Output into a pipe or file is
//! never shortened.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use chrono::{Local, TimeZone};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Space between two table columns.
const GAP: usize = 2;
/// A shrinkable column is never made narrower than this.
const MIN_SHRUNK: usize = 12;
/// Width of the label column of a `Label: value` block (as mqadmin's `%-20s`).
const LABEL_WIDTH: usize = 20;

/// The terminal's width when stdout is a terminal; `None` for a pipe or file.
pub(crate) fn terminal_width() -> Option<usize> {
    if !io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_rows, cols)| usize::from(cols))
        .filter(|&w| w > 0)
}

/// Writes a status or error line to stderr. In a terminal it is broken between words to the
/// terminal's width, the continuation indented; into a file or pipe it stays one line.
pub(crate) fn status(line: &str) {
    let screen = if io::stderr().is_terminal() {
        console::Term::stderr()
            .size_checked()
            .map(|(_rows, cols)| usize::from(cols))
    } else {
        None
    };
    let mut text = String::new();
    match screen {
        Some(w) if w > 20 && width(line) > w => {
            let mut current = String::new();
            for word in line.split(' ') {
                if !current.is_empty() && width(&current) + 1 + width(word) > w {
                    text.push_str(&current);
                    text.push('\n');
                    current = "  ".to_owned();
                } else if !current.is_empty() && current != "  " {
                    current.push(' ');
                }
                current.push_str(word);
            }
            text.push_str(&current);
        }
        _ => text.push_str(line),
    }
    text.push('\n');
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

/// Characters shown in a terminal (all our text is single-width or counted as such).
fn width(s: &str) -> usize {
    console::measure_text_width(s)
}

/// `s` shortened to `max` columns with `…` in the middle.
fn shorten(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let keep = max.saturating_sub(1);
    let head = keep / 2;
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Alignment of a column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// One column of a [`Table`].
pub(crate) struct Col {
    heading: &'static str,
    align: Align,
    shrink: bool,
}

impl Col {
    /// Left-aligned text that is never shortened (ids, addresses, times).
    pub(crate) fn text(heading: &'static str) -> Col {
        Col {
            heading,
            align: Align::Left,
            shrink: false,
        }
    }
    /// A name that may be shortened in the middle to fit the terminal.
    pub(crate) fn name(heading: &'static str) -> Col {
        Col {
            shrink: true,
            ..Col::text(heading)
        }
    }
    /// A right-aligned number.
    pub(crate) fn num(heading: &'static str) -> Col {
        Col {
            align: Align::Right,
            ..Col::text(heading)
        }
    }
}

/// A table with mqadmin-style `#Heading`s.
pub(crate) struct Table {
    cols: Vec<Col>,
    rows: Vec<Vec<String>>,
    /// Leading columns that, on a screen too narrow for the whole table, become a heading
    /// line above each run of rows sharing their values.
    group_by: usize,
}

impl Table {
    pub(crate) fn new(cols: Vec<Col>) -> Table {
        Table {
            cols,
            rows: Vec::new(),
            group_by: 0,
        }
    }

    /// On a narrow screen, the first `n` columns head each run of rows that shares them,
    /// instead of repeating on every row (topic and broker of a queue table).
    pub(crate) fn grouped(mut self, n: usize) -> Table {
        self.group_by = n.min(self.cols.len().saturating_sub(1));
        self
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.cols.len());
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text for a screen `max_width` wide (`None`: unlimited).
    pub(crate) fn render(&self, max_width: Option<usize>) -> String {
        let mut widths: Vec<usize> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(c.heading)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        if let Some(max) = max_width.filter(|&m| total(&widths) > m) {
            if self.group_by > 0 {
                return self.render_grouped(max);
            }
            // Shorten the widest shrinkable column one step at a time, so that long names
            // give up room before short ones.
            while total(&widths) > max {
                let widest = (0..widths.len())
                    .filter(|&i| {
                        self.cols[i].shrink
                            && widths[i] > MIN_SHRUNK.max(width(self.cols[i].heading))
                    })
                    .max_by_key(|&i| widths[i]);
                match widest {
                    Some(i) => widths[i] -= 1,
                    None => return self.render_blocks(max),
                }
            }
        }
        let mut out = String::new();
        let headings: Vec<String> = self.cols.iter().map(|c| c.heading.to_owned()).collect();
        for cells in std::iter::once(&headings).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let cell = shorten(cell, widths[i]);
                let pad = widths[i] - width(&cell);
                let last = i + 1 == cells.len();
                match self.cols[i].align {
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&cell);
                    }
                    Align::Left if last => line.push_str(&cell),
                    Align::Left => {
                        line.push_str(&cell);
                        line.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    line.push_str(&" ".repeat(GAP));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Each run of rows sharing the grouped columns: a `Heading: value` line of those, then a
    /// table of the other columns.
    fn render_grouped(&self, max: usize) -> String {
        let n = self.group_by;
        let mut out = String::new();
        let mut start = 0;
        while start < self.rows.len() {
            let key = &self.rows[start][..n];
            let end = (start..self.rows.len())
                .find(|&i| &self.rows[i][..n] != key)
                .unwrap_or(self.rows.len());
            let heading: Vec<String> = self.cols[..n]
                .iter()
                .zip(key)
                .map(|(c, v)| format!("{}: {v}", c.heading.trim_start_matches('#')))
                .collect();
            let one_line = heading.join("  ");
            if start > 0 {
                out.push('\n');
            }
            if width(&one_line) <= max {
                out.push_str(&one_line);
                out.push('\n');
            } else {
                for h in &heading {
                    out.push_str(&shorten(h, max));
                    out.push('\n');
                }
            }
            let mut rest = Table::new(
                self.cols[n..]
                    .iter()
                    .map(|c| Col {
                        heading: c.heading,
                        align: c.align,
                        shrink: c.shrink,
                    })
                    .collect(),
            );
            for row in &self.rows[start..end] {
                rest.row(row[n..].to_vec());
            }
            out.push_str(&rest.render(Some(max)));
            start = end;
        }
        out
    }

    /// One `Heading: value` block per row, for tables too wide for the screen.
    fn render_blocks(&self, max: usize) -> String {
        let mut out = String::new();
        for (n, row) in self.rows.iter().enumerate() {
            if n > 0 {
                out.push('\n');
            }
            let fields: Vec<(&str, String)> = self
                .cols
                .iter()
                .map(|c| c.heading.trim_start_matches('#'))
                .zip(row.iter().cloned())
                .collect();
            out.push_str(&render_fields(&fields, Some(max)));
        }
        out
    }

    pub(crate) fn print(&self) {
        emit(&self.render(terminal_width()));
    }
}

/// `Label: value` lines as mqadmin prints a single record; values too long for the screen
/// wrap under the value column.
pub(crate) fn render_fields(fields: &[(&str, String)], max_width: Option<usize>) -> String {
    let label_width = fields
        .iter()
        .map(|(l, _)| width(l) + 1)
        .max()
        .unwrap_or(0)
        .max(LABEL_WIDTH.min(max_width.unwrap_or(usize::MAX) / 3));
    let room = max_width.map(|w| w.saturating_sub(label_width + 1).max(8));
    let mut out = String::new();
    for (label, value) in fields {
        let label = format!("{label}:");
        let mut lines = wrap(value, room).into_iter();
        let first = lines.next().unwrap_or_default();
        out.push_str(format!("{label:<label_width$} {first}").trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(&" ".repeat(label_width + 1));
            out.push_str(&more);
            out.push('\n');
        }
    }
    out
}

pub(crate) fn print_fields(fields: &[(&str, String)]) {
    emit(&render_fields(fields, terminal_width()));
}

/// `text` in lines of at most `room` columns, broken after the last space or comma of the
/// line unless that leaves less than a quarter of it, else hard. Embedded newlines are kept.
fn wrap(text: &str, room: Option<usize>) -> Vec<String> {
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let Some(room) = room else {
            lines.push(raw.to_owned());
            continue;
        };
        let mut rest: Vec<char> = raw.chars().collect();
        while rest.len() > room {
            let cut = (room / 4..room)
                .rev()
                .find(|&i| matches!(rest[i], ' ' | ','))
                .map(|i| i + 1)
                .unwrap_or(room);
            lines.push(rest[..cut].iter().collect::<String>().trim_end().to_owned());
            rest.drain(..cut);
            // The next line starts at the next word, not at the space that was broken on.
            while rest.first() == Some(&' ') {
                rest.remove(0);
            }
        }
        lines.push(rest.into_iter().collect());
    }
    lines
}

/// Prints one JSON document (pretty, as people read it too) on stdout.
pub(crate) fn print_json(value: &Value) {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.push('\n');
    emit(&text);
}

/// Prints one JSON value on a line of its own and flushes, for line-by-line readers.
pub(crate) fn print_json_line(value: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `text` to stdout. A reader that went away (`rmq topic list | head -1`) is not an
/// error of the command, so a failed write is ignored instead of panicking as `print!` would.
pub(crate) fn emit(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints one line and flushes; an error is a closed stdout.
pub(crate) fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Milliseconds since the epoch as mqadmin shows times: `yyyy-MM-dd HH:mm:ss`, local time.
/// Zero or a negative value (no time recorded) is shown as `-`.
pub(crate) fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ms.to_string(),
    }
}

/// A progress bar on stderr, or a hidden one when stdout is not a terminal (a script reads
/// the output) or stderr is not one. `len` is the total when known; without it the bar is a
/// counter with a spinner.
pub(crate) fn progress(len: Option<u64>, what: &'static str) -> ProgressBar {
    let visible = io::stdout().is_terminal() && io::stderr().is_terminal();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let style = match len {
        Some(_) => ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} ({elapsed}, {eta} left)",
        ),
        None => ProgressStyle::with_template("{spinner} {msg} {human_pos} ({elapsed})"),
    }
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(len, target)
        .with_style(style)
        .with_message(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A message body for display: the text when it is UTF-8, else a note of its size.
pub(crate) fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("<{} bytes, not UTF-8; see --json>", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(vec![
            Col::name("#Topic"),
            Col::num("#QID"),
            Col::text("#Addr"),
        ]);
        t.row(vec![
            "a_very_long_topic_name_0123456789".into(),
            "3".into(),
            "127.0.0.1:10911".into(),
        ]);
        t.row(vec!["short".into(), "12".into(), "127.0.0.1:10911".into()]);
        t
    }

    #[test]
    fn unlimited_width_keeps_every_character() {
        let text = sample().render(None);
        assert!(text.contains("a_very_long_topic_name_0123456789"), "{text}");
        assert!(text.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn narrow_screen_shortens_names_in_the_middle() {
        let text = sample().render(Some(40));
        assert!(text.lines().all(|l| width(l) <= 40), "{text}");
        assert!(text.contains('…') && text.contains("6789"), "{text}");
        assert!(text.contains("127.0.0.1:10911"), "{text}");
    }

    #[test]
    fn too_narrow_for_any_table_prints_blocks() {
        let text = sample().render(Some(20));
        assert!(text.contains("Topic:"), "{text}");
        assert!(text.lines().all(|l| width(l) <= 20), "{text}");
    }

    #[test]
    fn narrow_screen_groups_rows_under_their_leading_columns() {
        let mut t = Table::new(vec![
            Col::name("#Topic"),
            Col::name("#Broker Name"),
            Col::num("#QID"),
            Col::num("#Broker Offset"),
        ])
        .grouped(2);
        for q in 0..3 {
            t.row(vec![
                "OrderEvents_Payment_Settlement".into(),
                "broker-a".into(),
                q.to_string(),
                "1234567".into(),
            ]);
        }
        t.row(vec![
            "OrderEvents_Payment_Settlement".into(),
            "broker-b".into(),
            "0".into(),
            "7".into(),
        ]);
        let text = t.render(Some(40));
        assert!(text.lines().all(|l| width(l) <= 40), "{text}");
        assert_eq!(text.matches("Broker Name: broker-a").count(), 1, "{text}");
        assert_eq!(text.matches("Broker Name: broker-b").count(), 1, "{text}");
        assert_eq!(text.matches("#QID").count(), 2, "{text}");
        // Wide enough for all columns: one plain table.
        assert!(t.render(Some(200)).starts_with("#Topic"));
    }

    #[test]
    fn long_values_wrap_under_the_value_column() {
        let v =
            "KEYS=k1, UNIQ_KEY=0A0B0C, TAGS=TagA, WAIT=true, extra=".to_owned() + &"x".repeat(60);
        let text = render_fields(&[("Properties", v)], Some(50));
        assert!(
            text.lines().count() > 1 && text.lines().all(|l| width(l) <= 50),
            "{text}"
        );
    }
}
