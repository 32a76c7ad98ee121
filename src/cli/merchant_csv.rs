//! `merchant import FILE.csv` (SPEC §7): the file's bytes → one row per merchant, each with its
//! line in the file. Only reading and shape are checked here (encoding, header, columns); the
//! merchant rules are `ops::merchant_import`'s, the same as `merchant add`'s.
//!
//! Excel in Korea saves "CSV" as CP949 unless told "CSV UTF-8", which writes a BOM; both come in.
//! A file that is valid UTF-8 is read as UTF-8; anything else is decoded as CP949 (a superset of
//! EUC-KR), and refused when that fails too, rather than importing mojibake names.

use crate::ops::{ImportRow, NewMerchant};

/// The columns, in any order; the first three are required.
const COLUMNS: [&str; 7] = ["id", "name", "contact", "business_no", "mid", "applied_at", "language"];

/// The rows of `bytes`, or one line saying what is wrong with the file as a whole. Every row's
/// own problem is left to the merchant checks, which report them all at once.
pub fn parse(bytes: &[u8]) -> Result<Vec<ImportRow>, String> {
    let text = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| format!("cannot read the header row: {}", one_line(&text, &e)))?.clone();
    let mut index = [None; COLUMNS.len()];
    for (i, h) in header.iter().enumerate() {
        let name = h.to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(c) if index[c].is_some() => return Err(format!("line 1: column {name:?} appears twice")),
            Some(c) => index[c] = Some(i),
            None if name.is_empty() => {}
            None => return Err(format!("line 1: unknown column {h:?} (the columns are {})", COLUMNS.join(","))),
        }
    }
    if let Some(missing) = (0..3).find(|&c| index[c].is_none()) {
        return Err(format!(
            "line 1: the header row must name the columns {} (id, name and contact are required); {:?} is missing",
            COLUMNS.join(","),
            COLUMNS[missing]
        ));
    }
    let mut rows = Vec::new();
    let mut lines = LineCounter::default();
    for record in reader.records() {
        let record = record.map_err(|e| one_line(&text, &e))?;
        // From the byte offset: the reader's own line count skips blank lines.
        let line = record.position().map_or(0, |p| lines.line_at(&text, p.byte()));
        if record.iter().all(str::is_empty) {
            continue; // a blank line, as spreadsheets leave at the end
        }
        let field = |c: usize| index[c].and_then(|i| record.get(i)).map(str::trim).unwrap_or_default();
        let list = |c: usize| -> Vec<String> {
            field(c).split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        let optional = |c: usize| Some(field(c)).filter(|s| !s.is_empty()).map(str::to_owned);
        // Named with the row by the merchant checks, which list every bad row.
        let mut problem = None;
        let language = match optional(6).map(|l| l.parse()) {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                problem = Some(e);
                None
            }
            None => None,
        };
        // `flexible` reads rows of any length; a value beyond the header's columns would be lost.
        if record.iter().skip(header.len()).any(|f| !f.trim().is_empty()) {
            problem = Some(format!(
                "{} fields where the header names {} — a comma inside a value needs quotes (\"Acme, Inc.\")",
                record.len(),
                header.len()
            ));
        }
        rows.push(ImportRow {
            line,
            merchant: NewMerchant {
                id: field(0).to_owned(),
                name: field(1).to_owned(),
                contacts: list(2),
                business_no: optional(3),
                mids: list(4),
                applied_at: optional(5),
                language,
                force: false,
            },
            problem,
        });
    }
    Ok(rows)
}

/// UTF-8 (a BOM dropped), else CP949.
fn decode(bytes: &[u8]) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    let (text, had_errors) = encoding_rs::EUC_KR.decode_without_bom_handling(bytes);
    if had_errors {
        return Err("neither UTF-8 nor CP949 (EUC-KR): save it from Excel as \"CSV UTF-8\"".into());
    }
    Ok(text.into_owned())
}

/// [`line_at`] for offsets that only grow (the records, in order): counts from where it was,
/// so a large file is read once, not once per row.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    lines: u64,
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: u64) -> u64 {
        let bytes = text.as_bytes();
        let mut end = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        let from = self.offset.min(end);
        self.lines += line_ends(bytes, from, end);
        self.offset = end;
        self.lines + 1
    }
}

/// Line ends (LF, CRLF, a lone CR) in `bytes[from..to]`.
fn line_ends(bytes: &[u8], from: usize, to: usize) -> u64 {
    (from..to).filter(|&i| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'))).count() as u64
}

/// The 1-based line of the record starting at byte `offset` (the reader reports a record from
/// the end of the one before, so blank lines in between are stepped over first).
fn line_at(text: &str, offset: u64) -> u64 {
    let bytes = text.as_bytes();
    let mut end = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
        end += 1;
    }
    // A line ends with LF, CRLF or a lone CR ("CSV (Macintosh)"), as the reader takes them.
    line_ends(bytes, 0, end) + 1
}

fn one_line(text: &str, e: &csv::Error) -> String {
    let what = e.to_string().replace('\n', " ");
    match e.position() {
        Some(p) => format!("line {}: {what}", line_at(text, p.byte())),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utf8_with_a_bom_and_splits_lists_on_semicolons() {
        let file = "\u{feff}id,name,contact,business_no,mid,applied_at,language\n\
                    acme,에이씨미 주식회사,pay@acme.test; ops@acme.test,220-81-62517,acme_mid1;acme_mid2,2026-11-02,en\n\
                    \n\
                    beta,\"Beta, Inc.\",b@beta.test,,,,\n";
        let rows = parse(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!((a.line, a.merchant.id.as_str(), a.merchant.name.as_str()), (2, "acme", "에이씨미 주식회사"));
        assert_eq!(a.merchant.contacts, ["pay@acme.test", "ops@acme.test"]);
        assert_eq!(a.merchant.mids, ["acme_mid1", "acme_mid2"]);
        assert_eq!(a.merchant.language, Some(crate::config::Language::En));
        assert_eq!(a.merchant.applied_at.as_deref(), Some("2026-11-02"));
        assert_eq!((rows[1].line, rows[1].merchant.name.as_str()), (4, "Beta, Inc."));
        assert_eq!(rows[1].merchant.business_no, None);
    }

    #[test]
    fn line_numbers_count_lf_crlf_and_a_lone_cr_as_the_reader_does() {
        // Found by the merchant_csv fuzz target: two rows after CR-only line ends got one number.
        for file in
            ["id,name,contact\ra,x,a@a.test\rb,y,b@b.test\r", "id,name,contact\r\na,x,a@a.test\r\n\r\nb,y,b@b.test\n"]
        {
            let lines: Vec<u64> = parse(file.as_bytes()).unwrap().iter().map(|r| r.line).collect();
            let want: &[u64] = if file.contains("\r\n\r\n") { &[2, 4] } else { &[2, 3] };
            assert_eq!(lines, want, "{file:?}");
        }
        // The fuzzer's own input, kept.
        let rows = parse(include_bytes!("../../tests/fixtures/csv/fuzz_lone_cr_rows.csv")).unwrap();
        assert!(
            rows.windows(2).all(|w| w[0].line < w[1].line),
            "{:?}",
            rows.iter().map(|r| r.line).collect::<Vec<_>>()
        );
    }

    #[test]
    fn reads_cp949_as_excel_saves_it_and_refuses_what_is_neither() {
        let (cp949, _, _) = encoding_rs::EUC_KR.encode("id,name,contact\nacme,에이씨미,pay@acme.test\n");
        assert!(std::str::from_utf8(&cp949).is_err(), "really CP949");
        let rows = parse(&cp949).unwrap();
        assert_eq!(rows[0].merchant.name, "에이씨미");
        let e = parse(b"id,name,contact\nacme,\xff\xfe\xff,pay@acme.test\n").unwrap_err();
        assert!(e.contains("neither UTF-8 nor CP949"), "{e}");
    }

    #[test]
    fn a_bad_header_is_refused_with_the_columns_expected() {
        for (file, what) in [
            ("id,name\nacme,x\n", "\"contact\" is missing"),
            ("id,name,contact,phone\n", "unknown column \"phone\""),
            ("id,name,contact,id\n", "appears twice"),
            ("", "\"id\" is missing"),
        ] {
            let e = parse(file.as_bytes()).unwrap_err();
            assert!(e.starts_with("line 1:") && e.contains(what), "{file:?}: {e}");
        }
        // A row's own problems are the merchant checks' to list, with every other bad row.
        let rows = parse(b"id,name,contact,language\nacme,x,a@b.test,fr\n").unwrap();
        assert!(rows[0].problem.as_deref().is_some_and(|p| p.contains("ko or en")), "{:?}", rows[0].problem);
        let rows = parse(b"id,name,contact\nbeta,Acme, Inc.,b@b.test\ngamma,G,g@g.test,\n").unwrap();
        assert!(rows[0].problem.as_deref().is_some_and(|p| p.contains("needs quotes")), "{:?}", rows[0].problem);
        assert_eq!(rows[1].problem, None, "an empty trailing field is fine");
    }
}
