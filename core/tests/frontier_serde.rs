//! Checkpoints, spans and the policy's settings and counters through serde (feature `serde`).
//! Built only with the feature on (`required-features` in core/Cargo.toml); `make test` runs it
//! in the `--all-features` set.

use weir::frontier::{
    Checkpoint, Frontier, FrontierConfig, LegacyCheckpoint, Metrics, PolicyConfig, Span, Timestamp,
};

fn lagging_frontier() -> Frontier<Timestamp> {
    let table = Span::new(b"a", b"z").unwrap();
    let mut f =
        Frontier::from_spans(FrontierConfig::default(), [table], Timestamp::new(1, 0)).unwrap();
    f.forward(&Span::new(b"b", b"c").unwrap(), Timestamp::new(5, 2))
        .unwrap();
    f.forward(
        &Span::new(b"d", b"\xff\x00binary").unwrap(),
        Timestamp::new(9, 0),
    )
    .unwrap();
    f
}

#[test]
fn checkpoint_round_trips_and_restores() {
    let f = lagging_frontier();
    let cp = f.checkpoint(1 << 20);
    let json = serde_json::to_string(&cp).unwrap();
    let back: Checkpoint<Timestamp> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cp);
    let mut restarted = Frontier::from_spans(
        FrontierConfig::default(),
        [Span::new(b"a", b"z").unwrap()],
        Timestamp::new(1, 0),
    )
    .unwrap();
    restarted.restore(&back).unwrap();
    let entries = |f: &Frontier<Timestamp>| f.entries().collect::<Vec<_>>();
    assert_eq!(entries(&restarted), entries(&f));
}

#[test]
fn legacy_checkpoint_round_trips() {
    let cp = lagging_frontier().legacy_checkpoint(1 << 20);
    assert_eq!(cp.timestamp, Some(Timestamp::new(5, 2)));
    let json = serde_json::to_string(&cp).unwrap();
    let back: LegacyCheckpoint<Timestamp> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cp);
}

#[test]
fn deserialising_an_invalid_span_fails() {
    assert!(serde_json::from_str::<Span>(r#"{"start":[98],"end":[97]}"#).is_err());
    assert!(serde_json::from_str::<Span>(r#"{"start":[97],"end":[97]}"#).is_err());
    let ok: Span = serde_json::from_str(r#"{"start":[97],"end":[98]}"#).unwrap();
    assert_eq!(ok, Span::new(b"a", b"b").unwrap());
}

#[test]
fn settings_and_counters_serialise() {
    let config: PolicyConfig =
        serde_json::from_str(&serde_json::to_string(&PolicyConfig::default()).unwrap()).unwrap();
    assert_eq!(config, PolicyConfig::default());
    let metrics = serde_json::to_value(Metrics::default()).unwrap();
    assert_eq!(metrics["high_water_persists"], 0);
}
