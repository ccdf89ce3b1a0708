//! State store: put/delete/reopen, compaction and its crash windows, torn and corrupt
//! change logs, damaged snapshots reported as errors, bounds.

use std::fs;
use std::path::Path;

use storage::{Damage, Error, StateConfig, StateStore};

fn key(i: u32) -> Vec<u8> {
    format!("session/{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("state of {i} in round {round}: {}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Writes keys 0..n in `rounds` rounds (later rounds overwrite), deleting every 7th key.
fn populate(store: &mut StateStore, n: u32, rounds: u32) {
    for round in 0..rounds {
        for i in 0..n {
            store.put(&key(i), &value(i, round)).unwrap();
        }
    }
    for i in (0..n).step_by(7) {
        assert!(store.delete(&key(i)).unwrap());
    }
}

fn assert_populated(store: &StateStore, n: u32, rounds: u32) {
    for i in 0..n {
        let want = (!i.is_multiple_of(7)).then(|| value(i, rounds - 1));
        assert_eq!(store.get(&key(i)).map(<[u8]>::to_vec), want, "key {i}");
    }
    assert_eq!(store.len(), (0..n).filter(|i| !i.is_multiple_of(7)).count());
}

fn no_auto() -> StateConfig {
    StateConfig { auto_compact: false, ..StateConfig::default() }
}

#[test]
fn put_delete_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, rec) = StateStore::open(dir.path()).unwrap();
    assert_eq!((rec.entries, rec.generation, rec.replayed), (0, 0, 0));
    populate(&mut store, 100, 3);
    assert!(!store.delete(b"absent").unwrap());
    let seq = store.next_seq();
    assert_eq!(seq, 300 + 15, "a delete of an absent key is not logged");
    assert_eq!(store.durable_seq(), 0);
    assert_eq!(store.sync().unwrap(), seq);
    drop(store);

    let (store, rec) = StateStore::open(dir.path()).unwrap();
    assert_eq!(rec.replayed, seq);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.entries, store.len());
    assert_populated(&store, 100, 3);
    assert_eq!(store.next_seq(), seq);
    assert_eq!(store.durable_seq(), seq);
    let keys: Vec<&[u8]> = store.iter().map(|(k, _)| k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "iteration in key order");
    assert_eq!(store.iter_prefix(b"session/0001").count(), 9, "10..19 less 14");
}

#[test]
fn compaction_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open_with(dir.path(), no_auto()).unwrap();
    populate(&mut store, 200, 4);
    let log_before = store.log_bytes();
    store.compact().unwrap();
    assert_eq!(store.durable_seq(), store.next_seq(), "compaction makes everything durable");
    assert!(store.snapshot_bytes() > 0);
    assert!(store.log_bytes() < 100, "fresh change log: {}", store.log_bytes());
    assert!(store.snapshot_bytes() < log_before);
    store.put(b"after", b"compaction").unwrap();
    store.delete(&key(1)).unwrap();
    store.sync().unwrap();
    drop(store);

    let (store, rec) = StateStore::open_with(dir.path(), no_auto()).unwrap();
    assert_eq!(rec.generation, 1);
    assert_eq!(rec.replayed, 2, "only the changes since the snapshot are replayed");
    assert!(rec.snapshot_bytes > 0);
    assert_eq!(store.get(b"after"), Some(&b"compaction"[..]));
    assert_eq!(store.get(&key(1)), None);
    assert_eq!(store.get(&key(2)).unwrap(), &value(2, 3)[..]);
    assert_eq!(store.len(), 200 - 29 - 1 + 1);
}

#[test]
fn automatic_compaction_bounds_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig { compact_min_bytes: 16 << 10, compact_ratio: 2, ..StateConfig::default() };
    let (mut store, _) = StateStore::open_with(dir.path(), config.clone()).unwrap();
    // 50 keys rewritten 200 times: history is far larger than the live state.
    for round in 0..200 {
        for i in 0..50 {
            store.put(&key(i), &value(i, round)).unwrap();
        }
        let bound = (16u64 << 10).max(2 * store.snapshot_bytes());
        assert!(store.log_bytes() <= bound + 4096, "round {round}: log {} bound {bound}", store.log_bytes());
    }
    assert!(store.compactions() > 5, "{} compactions", store.compactions());
    store.sync().unwrap();
    let history = store.next_seq();
    drop(store);
    let (store, rec) = StateStore::open_with(dir.path(), config).unwrap();
    assert!(rec.replayed < history / 5, "replayed {} of {history}", rec.replayed);
    for i in 0..50 {
        assert_eq!(store.get(&key(i)).unwrap(), &value(i, 199)[..]);
    }
}

fn changes(dir: &Path) -> std::path::PathBuf {
    dir.join("changes.log")
}

#[test]
fn torn_change_log_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open(dir.path()).unwrap();
    populate(&mut store, 20, 1);
    store.sync().unwrap();
    let synced = store.next_seq();
    store.put(b"torn", &[7u8; 500]).unwrap();
    let _ = store.flush().unwrap();
    drop(store);
    let path = changes(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 100).unwrap();

    let (mut store, rec) = StateStore::open(dir.path()).unwrap();
    assert_eq!(rec.tail_damage, Some(Damage::Torn));
    assert_eq!(rec.truncated_bytes, (21 + 4 + 500 - 100) as u64);
    assert_eq!(rec.replayed, synced);
    assert_eq!(store.get(b"torn"), None);
    assert_populated(&store, 20, 1);
    store.put(b"next", b"ok").unwrap();
    store.sync().unwrap();
    drop(store);
    let (store, rec) = StateStore::open(dir.path()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(store.get(b"next"), Some(&b"ok"[..]));
}

#[test]
fn corrupt_change_log_frame_cuts_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open(dir.path()).unwrap();
    for i in 0..10 {
        store.put(&key(i), b"v").unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let path = changes(dir.path());
    let mut data = fs::read(&path).unwrap();
    let frame = 21 + key(0).len() + 1;
    data[24 + 5 * frame + 22] ^= 0x01; // inside the key of the sixth frame
    fs::write(&path, &data).unwrap();
    let (store, rec) = StateStore::open(dir.path()).unwrap();
    assert!(matches!(rec.tail_damage, Some(Damage::Corrupt(_))), "{rec:?}");
    assert_eq!(rec.replayed, 5);
    assert_eq!(rec.truncated_bytes, 5 * frame as u64);
    assert_eq!(store.len(), 5);
}

#[test]
fn corrupted_snapshot_is_an_error_not_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open(dir.path()).unwrap();
    populate(&mut store, 50, 1);
    store.compact().unwrap();
    drop(store);
    let snap = dir.path().join("state.snap");
    let good = fs::read(&snap).unwrap();

    // A flipped bit anywhere in the archive.
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x04;
    fs::write(&snap, &bad).unwrap();
    let err = StateStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
    assert!(err.to_string().contains("crc32c"), "{err}");

    // A truncated snapshot.
    fs::write(&snap, &good[..good.len() - 10]).unwrap();
    assert!(StateStore::open(dir.path()).unwrap_err().is_corrupt());

    // A consistent CRC over bytes rkyv refuses: the checked access catches it.
    let mut forged = good.clone();
    for b in &mut forged[24..] {
        *b = 0xFF;
    }
    let crc = crc32c::crc32c(&forged[24..]);
    forged[16..20].copy_from_slice(&crc.to_le_bytes());
    fs::write(&snap, &forged).unwrap();
    let err = StateStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("invalid archive"), "{err}");

    // A lost snapshot next to a change log that follows it.
    fs::remove_file(&snap).unwrap();
    let err = StateStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("generation"), "{err}");

    fs::write(&snap, &good).unwrap();
    let (store, _) = StateStore::open(dir.path()).unwrap();
    assert_populated(&store, 50, 1);
}

#[test]
fn change_log_of_an_older_generation_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open_with(dir.path(), no_auto()).unwrap();
    populate(&mut store, 30, 2);
    store.sync().unwrap();
    let old_log = fs::read(changes(dir.path())).unwrap();
    store.compact().unwrap();
    drop(store);
    // A crash between the snapshot's rename and the new change log's.
    fs::write(changes(dir.path()), &old_log).unwrap();
    let (store, rec) = StateStore::open_with(dir.path(), no_auto()).unwrap();
    assert!(rec.stale_log_discarded);
    assert_eq!(rec.replayed, 0);
    assert_populated(&store, 30, 2);
    drop(store);
    let (_, rec) = StateStore::open_with(dir.path(), no_auto()).unwrap();
    assert!(!rec.stale_log_discarded, "replaced by a log of the current generation");
}

#[test]
fn bad_change_log_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(StateStore::open(dir.path()).unwrap());
    fs::write(changes(dir.path()), b"not a change log header at all").unwrap();
    assert!(StateStore::open(dir.path()).unwrap_err().is_corrupt());
}

#[test]
fn bounds_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateConfig { max_key_bytes: 8, max_value_bytes: 16, max_total_bytes: 40, ..StateConfig::default() };
    let (mut store, _) = StateStore::open_with(dir.path(), config).unwrap();
    assert!(matches!(store.put(b"123456789", b""), Err(Error::KeyTooLong { .. })));
    assert!(matches!(store.put(b"k", &[0; 17]), Err(Error::RecordTooLarge { .. })));
    store.put(b"a", &[0; 16]).unwrap();
    store.put(b"b", &[0; 16]).unwrap();
    assert!(matches!(store.put(b"c", &[0; 16]), Err(Error::StateFull { .. })));
    // Replacing a value is charged the difference only.
    store.put(b"b", &[1; 16]).unwrap();
    assert_eq!(store.live_bytes(), 34);
    assert_eq!(store.next_seq(), 3, "refused puts are not logged");
}
