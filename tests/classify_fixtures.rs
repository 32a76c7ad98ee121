//! The classify fixture corpus: every `tests/fixtures/mail/<case>.eml` is classified as stored
//! (bare LF) and converted to CRLF, and its report must equal `<case>.json`.
//!
//! On a mismatch `<case>.actual.json` is written beside it; `BLESS=1` rewrites the expectations
//! instead (review the diff before committing — the stored expectations were written by hand in
//! `make_fixtures.py`). Also: hostile inputs generated here rather than committed (an 8 MB
//! attachment).

use std::fs;
use std::path::{Path, PathBuf};

use hecto_watch::mail::{classify, MailKind, Rules};

const MIN_FIXTURES: usize = 40;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail")
}

/// LF → CRLF, leaving existing CRLF alone.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

#[test]
fn fixtures_match_expected_reports_in_lf_and_crlf() {
    let rules = Rules::default();
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let mut emls: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= MIN_FIXTURES, "found only {} fixtures in {}", emls.len(), fixture_dir().display());

    let mut failures = Vec::new();
    for eml in &emls {
        let file = eml.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let raw = fs::read(eml).expect("read eml");
        let json_path = eml.with_extension("json");
        let actual = serde_json::to_value(classify(&raw, &rules).report(&file)).expect("serialise");
        let actual_crlf = serde_json::to_value(classify(&to_crlf(&raw), &rules).report(&file)).expect("serialise");

        if bless {
            fs::write(&json_path, pretty(&actual)).expect("bless");
        }
        let expected: serde_json::Value = match fs::read_to_string(&json_path) {
            Ok(s) => serde_json::from_str(&s).expect("expected json parses"),
            Err(_) => serde_json::Value::Null,
        };
        let actual_path = eml.with_extension("actual.json");
        if actual != expected || actual_crlf != expected {
            let shown = if actual != expected { &actual } else { &actual_crlf };
            fs::write(&actual_path, pretty(shown)).expect("write actual");
            failures.push(format!(
                "{file}: {} differs (see {})",
                if actual != expected { "LF" } else { "CRLF" },
                actual_path.display()
            ));
        } else {
            let _ = fs::remove_file(&actual_path);
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn eight_megabyte_attachment_finishes_and_classifies() {
    let mut raw = String::from(
        "From: =?utf-8?B?7Zel7Yag7YyM7J2064K47IWc?= <contract@hectofinancial.co.kr>\n\
         To: pay@dalbitshop.co.kr\n\
         Subject: =?utf-8?B?W+2Xpe2GoO2MjOydtOuCuOyFnF0g6rOE7JW97JmE66OMIOyViOuCtA==?=\n\
         Message-ID: <big@hectofinancial.co.kr>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"big\"\n\n\
         --big\nContent-Type: text/plain; charset=utf-8\n\nMID: big_mid_01\n\n\
         --big\nContent-Type: application/octet-stream; name=\"scan.bin\"\n\
         Content-Transfer-Encoding: base64\n\n",
    );
    // 8 MiB of base64 text: 76-character lines.
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n";
    while raw.len() < 8 * 1024 * 1024 {
        raw.push_str(line);
    }
    raw.push_str("\n--big--\n");
    let c = classify(raw.as_bytes(), &Rules::default());
    assert!(!c.unparseable);
    assert_eq!(c.kind, MailKind::ContractCompleted);
    assert_eq!(c.mids, vec!["big_mid_01"]);
    assert!(c.text.len() <= hecto_watch::mail::TEXT_LIMIT);
}

#[test]
fn huge_text_body_is_capped() {
    let mut raw =
        String::from("From: contract@hectofinancial.co.kr\nTo: pay@dalbitshop.co.kr\nSubject: x\n\nMID: early_mid_1\n");
    while raw.len() < 2 * 1024 * 1024 {
        raw.push_str("사업자등록번호 220-81-62517 가나다라마바사 아자차카타파하\n");
    }
    raw.push_str("MID: late_mid_99\n");
    let c = classify(raw.as_bytes(), &Rules::default());
    assert_eq!(c.mids, vec!["early_mid_1"], "text beyond the scan limit is not read");
    assert_eq!(c.business_numbers, vec!["2208162517"]);
    assert!(c.text.len() <= hecto_watch::mail::TEXT_LIMIT);
}

#[test]
fn cp949_bodies_decode_extension_syllables() {
    // 똠 exists only in CP949/UHC. `ks_c_5601-1987` (8bit and base64) is decoded by mail-parser
    // as WHATWG EUC-KR, which is CP949; the `cp949` label (quoted-printable) only after
    // `mail::charset` rewrites it.
    for case in ["guidance_ksc5601_b_8bit", "guidance_ksc5601_q_b64", "guidance_cp949_label_qp"] {
        let raw = fs::read(fixture_dir().join(format!("{case}.eml"))).expect("read fixture");
        let c = classify(&raw, &Rules::default());
        assert!(c.text.contains("주식회사 똠방각하"), "{case}: {:?}", c.text);
        assert!(!c.text.contains('\u{fffd}'), "{case}: replacement character in text");
        assert!(c.subject.contains("똠방각하"), "{case}: {:?}", c.subject);
    }
}
