//! `classify` throughput against plain `mail_parser` parsing of the same bytes.
//!
//! The corpus (10,000 mixed Korean mails of ~4 KB, see `support`) is generated from a fixed
//! seed, so runs are comparable. Target: classify ≥ 0.83 × parse (at most 1.2 × its time).
//! Besides criterion's report, prints msgs/s, MB/s and the ratio from the best of five
//! interleaved passes over the whole corpus.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hecto_watch::mail::{classify, MailKind, Rules};
use mail_parser::MessageParser;

const MAILS: usize = 10_000;
const SEED: u64 = 0x4845_4354_4f21;

fn parse_all(corpus: &[Vec<u8>]) -> usize {
    let mut parts = 0;
    for m in corpus {
        if let Some(msg) = MessageParser::default().parse(m) {
            parts += msg.parts.len();
        }
    }
    parts
}

fn classify_all(corpus: &[Vec<u8>], rules: &Rules) -> usize {
    corpus.iter().filter(|m| classify(m, rules).kind != MailKind::NotHecto).count()
}

/// Best of `ROUNDS` passes of each, interleaved, so that load from other processes on the
/// machine hits both alike.
fn best_interleaved(mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    const ROUNDS: usize = 5;
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        a();
        best_a = best_a.min(t.elapsed());
        let t = Instant::now();
        b();
        best_b = best_b.min(t.elapsed());
    }
    (best_a, best_b)
}

fn bench(c: &mut Criterion) {
    let corpus = support::corpus(MAILS, SEED);
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let rules = Rules::default();
    let hecto = classify_all(&corpus, &rules);
    eprintln!("corpus: {MAILS} mails, {:.1} MB, mean {} bytes, {hecto} Hecto mails", bytes as f64 / 1e6, bytes / MAILS);

    let mut group = c.benchmark_group("corpus");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mail_parser_parse", |b| b.iter(|| black_box(parse_all(black_box(&corpus)))));
    group.bench_function("classify", |b| b.iter(|| black_box(classify_all(black_box(&corpus), &rules))));
    group.finish();

    let (parse, classify) = best_interleaved(
        || {
            black_box(parse_all(&corpus));
        },
        || {
            black_box(classify_all(&corpus, &rules));
        },
    );
    let report = |name: &str, d: Duration| {
        let s = d.as_secs_f64();
        println!("{name:>10}: {:>9.0} msgs/s  {:>7.1} MB/s", MAILS as f64 / s, bytes as f64 / 1e6 / s);
    };
    report("parse", parse);
    report("classify", classify);
    println!("     ratio: classify / parse throughput = {:.2}", parse.as_secs_f64() / classify.as_secs_f64());
}

criterion_group!(benches, bench);
criterion_main!(benches);
