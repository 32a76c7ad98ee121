//! Bytes as a client might write them to the control socket → the daemon's request decoding
//! (`control::Envelope`) → `Engine::reply` on a real sled database with two merchants, exactly as
//! `control::server` runs them. Must never panic, and every reply serialises. Every request is
//! executed, writes included (`merchant add`, `import-mail`, `advance`, `remove`…), so the
//! database grows and changes across inputs the way a long-lived daemon's does.
#![no_main]

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use hecto_watch::clock::Clock;
use hecto_watch::config::Config;
use hecto_watch::control::{Engine, Envelope};
use hecto_watch::ingest::Ingest;
use hecto_watch::schedule::Calendar;
use hecto_watch::store::Store;
use libfuzzer_sys::fuzz_target;

static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| "2026-12-01T00:00:00Z".parse().unwrap());

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("hecto-watch-fuzz-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).expect("a database in the temp dir");
    for (id, business_no) in [("acme", "2208162517"), ("beta", "1048145574")] {
        let m = hecto_watch::ops::NewMerchant {
            id: id.into(),
            name: format!("{id} 상점"),
            contacts: vec![format!("{id}@shop.test")],
            business_no: Some(business_no.into()),
            mids: vec![],
            applied_at: None,
            ..Default::default()
        };
        hecto_watch::ops::merchant_add(&store, &m, *NOW).expect("seed merchant");
    }
    let config = Config::builtin();
    Engine {
        ingest: Ingest::new(store.clone(), &config, Clock::Fixed(*NOW)),
        store,
        config: Arc::new(config),
        calendar: Arc::new(Calendar::builtin()),
        notifier: None,
        liveness: None,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let reply = ENGINE.reply(&envelope);
    serde_json::to_vec(&reply).expect("every reply serialises");
});
