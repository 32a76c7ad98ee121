//! Deterministic corpus of mixed Korean mail for the classify bench: no files, same bytes on
//! every run for the same seed.
//!
//! Mix (by message): UTF-8 50 %, EUC-KR 30 %, CP949 20 % (labelled `ks_c_5601-1987` or `cp949`,
//! with extension syllables such as 똠); base64 40 %, quoted-printable 30 %, 8bit 30 %;
//! HTML-only 15 %, multipart/alternative 20 %, plain text otherwise; about 1 % Hecto mails of
//! every kind. Each mail is about 4 KB.

mod phrases;

use phrases::{CP949_ONLY, PHRASES};

/// SplitMix64: tiny, seeded, and stable across crate versions (unlike `rand`'s `StdRng`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Clone, Copy)]
enum Charset {
    Utf8,
    EucKr,
    Cp949(&'static str),
}

impl Charset {
    fn label(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::EucKr => "euc-kr",
            Charset::Cp949(label) => label,
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len() * 4 / 3 + 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

fn base64_lines(input: &[u8]) -> Vec<u8> {
    let b = base64(input);
    let mut out = Vec::with_capacity(b.len() + b.len() / 76 * 2 + 2);
    for line in b.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3);
    let mut col = 0;
    for &b in input {
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            col = 0;
            continue;
        }
        let enc = b >= 0x80 || b == b'=' || b < 0x20;
        let width = if enc { 3 } else { 1 };
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if enc {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
        } else {
            out.push(b);
        }
        col += width;
    }
    out
}

/// One sentence in `cs`; CP949 mails sometimes use extension syllables.
fn sentence(rng: &mut Rng, cs: Charset) -> (String, Vec<u8>) {
    if matches!(cs, Charset::Cp949(_)) && rng.below(8) == 0 {
        let (text, bytes) = rng.pick(CP949_ONLY);
        return ((*text).to_owned(), bytes.to_vec());
    }
    let (text, euc, cp) = rng.pick(PHRASES);
    let bytes = match cs {
        Charset::Utf8 => text.as_bytes().to_vec(),
        Charset::EucKr => euc.to_vec(),
        Charset::Cp949(_) => cp.to_vec(),
    };
    ((*text).to_owned(), bytes)
}

const HECTO_SUBJECTS: &[&str] = &[
    "[헥토파이낸셜] 전자결제 서비스 계약 안내",
    "[헥토파이낸셜] 구비서류 요청",
    "[헥토파이낸셜] 계약완료 안내 및 MID 발급",
    "[헥토파이낸셜] 카드사 심사 요청 접수",
    "[헥토파이낸셜] 신한카드 심사 승인 안내",
    "[헥토파이낸셜] 카드사 심사완료 안내",
    "[헥토파이낸셜] 정산 안내",
];

const SENDERS: &[&str] = &[
    "news@shop.example.co.kr",
    "noreply@bank.example.kr",
    "hr@company.example.com",
    "event@mall.example.net",
    "team@startup.example.io",
];

/// `n` mails of about 4 KB each, from `seed`.
pub fn corpus(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| mail(&mut rng, i)).collect()
}

fn mail(rng: &mut Rng, i: usize) -> Vec<u8> {
    let hecto = rng.below(100) == 0;
    let cs = if hecto {
        Charset::Utf8
    } else {
        match rng.below(10) {
            0..=4 => Charset::Utf8,
            5..=7 => Charset::EucKr,
            8 => Charset::Cp949("ks_c_5601-1987"),
            _ => Charset::Cp949("cp949"),
        }
    };
    let cte = match rng.below(10) {
        0..=3 => "base64",
        4..=6 => "quoted-printable",
        _ => "8bit",
    };
    let layout = rng.below(100);

    // Hecto mails are UTF-8 (their templates are); the others use the phrase table's encodings.
    let subject_bytes = if hecto { rng.pick(HECTO_SUBJECTS).as_bytes().to_vec() } else { sentence(rng, cs).1 };
    let (from, to) = if hecto {
        if rng.below(3) == 0 {
            ("pay@merchant.example.co.kr", "contract@hectofinancial.co.kr")
        } else {
            ("contract@hectofinancial.co.kr", "pay@merchant.example.co.kr")
        }
    } else {
        (*rng.pick(SENDERS), "user@example.co.kr")
    };

    let mut m = Vec::with_capacity(4600);
    let day = 1 + i % 28;
    m.extend_from_slice(
        format!(
            "Return-Path: <bounce-{i}@{dom}>\r\n\
             Received: from mta{a}.{dom} (mta{a}.{dom} [203.0.113.{a}])\r\n\
             \tby mx.example.co.kr (Postfix) with ESMTPS id 4V{i:08X}\r\n\
             \tfor <{to}>; Tue, {day} May 2024 09:{mm:02}:11 +0900 (KST)\r\n\
             Received: from app{b}.internal ([10.0.{b}.7]) by mta{a}.{dom} with ESMTP id {i:x}\r\n\
             \t; Tue, {day} May 2024 09:{mm:02}:10 +0900\r\n\
             Received: from localhost (localhost [127.0.0.1]) by app{b}.internal; Tue, {day} May 2024 09:{mm:02}:09 +0900\r\n\
             DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={dom}; s=s2024;\r\n\
             \th=from:to:subject:date:message-id:mime-version;\r\n\
             \tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
             \tb=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG9mcmVkcGx1Z2h4eXp6eQ==\r\n\
             Authentication-Results: mx.example.co.kr;\r\n\
             \tdkim=pass (2048-bit key) header.d={dom} header.i=@{dom} header.b=Zm9vYmFy;\r\n\
             \tspf=pass (mx.example.co.kr: domain of bounce-{i}@{dom} designates 203.0.113.{a} as permitted sender) smtp.mailfrom=bounce-{i}@{dom};\r\n\
             \tdmarc=pass (p=NONE sp=NONE dis=NONE) header.from={dom}\r\n\
             X-Spam-Status: No, score=-0.{a} required=5.0 tests=DKIM_SIGNED,DKIM_VALID,HTML_MESSAGE\r\n\
             Date: Tue, {day} May 2024 09:{mm:02}:08 +0900\r\n\
             From: =?{cs}?B?{name}?= <{from}>\r\n\
             To: <{to}>\r\n\
             Subject: =?{cs}?B?{subject}?=\r\n\
             Message-ID: <{i}.{seed:x}@{dom}>\r\n\
             MIME-Version: 1.0\r\n",
            dom = from.rsplit('@').next().unwrap_or("example.com"),
            a = rng.below(250),
            b = rng.below(250),
            mm = i % 60,
            cs = cs.label(),
            name = base64(sentence(rng, cs).1.get(..6).unwrap_or_default()),
            subject = base64(&subject_bytes),
            seed = rng.next(),
        )
        .as_bytes(),
    );

    // Body: enough sentences that the encoded mail lands near 4 KB (QP triples Korean bytes,
    // base64 adds a third, HTML markup about a fifth), plus Hecto signals in Hecto mails.
    let mut text: Vec<u8> = Vec::with_capacity(3000);
    if hecto {
        text.extend_from_slice(
            "안녕하세요, 헥토파이낸셜 계약담당입니다.\n사업자등록번호 220-81-62517\nMID: shop_0001\n고객센터 1600-5220\n"
                .as_bytes(),
        );
    }
    let target = match (cte, layout < 15) {
        ("quoted-printable", _) => 800,
        ("base64", true) => 1500,
        ("base64", false) => 1800,
        (_, true) => 2000,
        _ => 2400,
    };
    while text.len() < target {
        let (_, s) = sentence(rng, cs);
        text.extend_from_slice(&s);
        text.push(if rng.below(3) == 0 { b'\n' } else { b' ' });
    }
    let html = {
        let mut h = b"<html><head><style>p{margin:0}</style></head><body><table><tr><td>".to_vec();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            if n > 0 {
                h.extend_from_slice(b"</td></tr>\r\n<tr><td>");
            }
            h.extend_from_slice(line);
        }
        h.extend_from_slice(b"</td></tr></table></body></html>\n");
        h
    };
    let encode = |body: &[u8]| -> Vec<u8> {
        match cte {
            "base64" => base64_lines(body),
            "quoted-printable" => quoted_printable(body),
            _ => {
                let mut v = Vec::with_capacity(body.len() + body.len() / 40);
                for &b in body {
                    if b == b'\n' {
                        v.push(b'\r');
                    }
                    v.push(b);
                }
                v
            }
        }
    };
    let leaf = |ctype: &str, body: &[u8]| -> Vec<u8> {
        let mut v =
            format!("Content-Type: {ctype}; charset=\"{}\"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n", cs.label())
                .into_bytes();
        v.extend_from_slice(&encode(body));
        v
    };
    if layout < 15 {
        m.extend_from_slice(&leaf("text/html", &html));
    } else if layout < 35 {
        let boundary = format!("----=_Part_{i}_{}", rng.below(1 << 30));
        m.extend_from_slice(
            format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n").as_bytes(),
        );
        // The alternative carries a shorter text so the whole mail stays near 4 KB.
        let half = text.len() / 2;
        let cut = (half..text.len()).find(|&k| text[k] == b' ' || text[k] == b'\n').unwrap_or(text.len());
        m.extend_from_slice(&leaf("text/plain", &text[..cut]));
        m.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        let hcut = (html.len() / 2..html.len()).find(|&k| html[k] == b'<').unwrap_or(html.len());
        m.extend_from_slice(&leaf("text/html", &html[..hcut]));
        m.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    } else {
        m.extend_from_slice(&leaf("text/plain", &text));
    }
    m
}
