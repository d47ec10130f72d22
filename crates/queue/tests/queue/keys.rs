//! Key layout: one hash slot per queue, so the queue runs on Redis Cluster.

use clarion_queue::{Error, QueueKeys};

/// The CRC16 (XMODEM) that Redis Cluster uses to place keys.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of a key, honouring `{hash tags}` as Redis does.
fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        let close = key[open + 1..].find('}')? + open + 1;
        (close > open + 1).then(|| &bytes[open + 1..close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

#[test]
fn the_slot_function_matches_redis_reference_values() {
    // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(slot("foo"), 12182);
    assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
}

#[test]
fn all_keys_of_a_queue_share_one_slot() {
    let keys = QueueKeys::new("clarion", "deliveries").unwrap();
    let slots: Vec<u16> = keys.all().iter().map(|k| slot(k)).collect();
    assert!(
        slots.windows(2).all(|w| w[0] == w[1]),
        "{keys:?} -> {slots:?}"
    );
    assert!(
        keys.all()
            .iter()
            .all(|k| k.starts_with("{clarion:deliveries}:"))
    );
    let other = QueueKeys::new("clarion", "webhooks").unwrap();
    assert_ne!(slot(&other.stream), slots[0], "queues spread over slots");
}

#[test]
fn braces_in_names_are_refused() {
    assert!(matches!(
        QueueKeys::new("clar{ion", "q"),
        Err(Error::InvalidName { part: "prefix", .. })
    ));
    assert!(matches!(
        QueueKeys::new("clarion", ""),
        Err(Error::InvalidName { part: "name", .. })
    ));
}
