//! The PUBLISH decode path allocates nothing when there are no properties (or only
//! integer-valued ones such as a topic alias): topic and payload are slices of the frame.
//! Kept in its own test binary so no other test allocates concurrently.

use std::alloc::System;

use proto::{read, BytesMut, Packet, Protocol, Publish, QoS};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn publish_decode_does_not_allocate() {
    for protocol in [Protocol::V4, Protocol::V5] {
        let mut publish = Publish::new("sensors/room1/temp", QoS::AtLeastOnce, vec![7u8; 512]);
        publish.pkid = 9;
        if protocol == Protocol::V5 {
            publish.properties.topic_alias = Some(3);
            publish.properties.message_expiry_interval = Some(60);
        }
        let packet = Packet::Publish(publish);
        let mut buf = BytesMut::with_capacity(4096);
        for _ in 0..3 {
            packet.write(protocol, &mut buf).unwrap();
        }
        // The first split turns the buffer into a shared one (a one-off allocation).
        assert_eq!(read(&mut buf, protocol, usize::MAX).as_ref(), Ok(&packet));

        for _ in 0..2 {
            let region = Region::new(GLOBAL);
            let decoded = read(&mut buf, protocol, usize::MAX);
            let change = region.change();
            assert_eq!(decoded.as_ref(), Ok(&packet));
            assert_eq!(change.allocations, 0, "{protocol:?}: {change:?}");
            assert_eq!(change.reallocations, 0, "{protocol:?}: {change:?}");
        }
    }
}
