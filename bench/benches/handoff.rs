//! Cross-shard handoff: batches of `Arc<shards::msg::Message>` sent from one glommio
//! executor to another over a bounded `glommio::channels::shared_channel`, the channel kind
//! RingMQ's ingress and egress meshes are made of.
//!
//! Two executors are started once per batch size, pinned to CPUs 0 and 1 (unbound if pinning
//! is refused), and stay up while criterion runs its iterations: start-up is outside the
//! timing. One iteration is one batch of 1, 16 or 256 messages, each built as a session
//! shard builds a PUBLISH (a fresh `Arc`, topic and payload sliced from a shared read buffer,
//! the publisher's id shared, a receive time), sent, received and dropped on the other core.
//! A run of `iters` batches is timed from the producer's first send to the consumer's
//! receipt of an end marker sent after the last batch (`iter_custom`), so the figure is
//! sustained messages per second through a channel of [`CHANNEL_CAPACITY`] batches, the
//! allocation of messages and batches included.
//!
//! On a 2-core machine the two executors take both cores: other work on the machine shows
//! up directly in these figures.
//!
//! Run: `cargo bench -p bench --bench handoff`.

use std::hint::black_box;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::channels::shared_channel;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use proto::QoS;
use shards::msg::Message;

/// Batches the channel holds, as in RingMQ's meshes (`channel_capacity` default).
const CHANNEL_CAPACITY: usize = 256;
/// Fixed I/O buffer memory per executor: these executors do no I/O, and locked memory is
/// limited (8 MiB here).
const IO_MEMORY: usize = 256 * 1024;
/// Topic of every message.
const TOPIC: &[u8] = b"devices/1234/telemetry";
/// Payload size of every message.
const PAYLOAD: usize = 64;

type Batch = Vec<Arc<Message>>;

/// CPU placements for the producer and the consumer, probed once: a pinned executor is
/// started and stopped on each CPU, and a CPU that refuses falls back to unbound.
fn placements() -> [Placement; 2] {
    static PLACEMENTS: OnceLock<[Placement; 2]> = OnceLock::new();
    PLACEMENTS
        .get_or_init(|| {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            [0, 1 % cpus].map(|cpu| {
                let probe = LocalExecutorBuilder::new(Placement::Fixed(cpu)).io_memory(IO_MEMORY).spawn(|| async {});
                match probe.map(|h| h.join()) {
                    Ok(Ok(())) => Placement::Fixed(cpu),
                    _ => {
                        eprintln!("handoff: cannot pin an executor to CPU {cpu}; running unbound");
                        Placement::Unbound
                    }
                }
            })
        })
        .clone()
}

/// A message as `client.rs` builds one from a decoded PUBLISH.
fn message(read_buffer: &Bytes, publisher: &Arc<str>) -> Arc<Message> {
    Arc::new(Message {
        topic: read_buffer.slice(..TOPIC.len()),
        payload: read_buffer.slice(TOPIC.len()..),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        publisher: publisher.clone(),
        received: shards::msg::now_us(),
        durable: false,
        offline: true,
        backpressure: true,
    })
}

/// A producer and a consumer executor joined by one channel, driven from the bench thread.
struct Rig {
    /// Number of batches to send in the next run; dropping it stops both executors.
    runs: mpsc::Sender<u64>,
    /// When the producer started each run.
    started: mpsc::Receiver<Instant>,
    /// When the consumer saw each run's end marker, and how many messages it received.
    done: mpsc::Receiver<(Instant, u64)>,
    handles: Vec<ExecutorJoinHandle<()>>,
}

impl Rig {
    fn start(batch_size: usize) -> Rig {
        let [producer_at, consumer_at] = placements();
        let (tx, rx) = shared_channel::new_bounded::<Batch>(CHANNEL_CAPACITY);
        let (runs, run_rx) = mpsc::channel::<u64>();
        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let producer = LocalExecutorBuilder::new(producer_at)
            .name("handoff-producer")
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let tx = tx.connect().await;
                let mut read_buffer = TOPIC.to_vec();
                read_buffer.resize(TOPIC.len() + PAYLOAD, 0xa5);
                let read_buffer = Bytes::from(read_buffer);
                let publisher: Arc<str> = Arc::from("bench-publisher");
                // Blocking this executor between runs is fine: it runs nothing else, and no
                // message is in flight once a run has ended.
                while let Ok(batches) = run_rx.recv() {
                    let start = Instant::now();
                    for _ in 0..batches {
                        let batch: Batch = (0..batch_size).map(|_| message(&read_buffer, &publisher)).collect();
                        if tx.send(batch).await.is_err() {
                            return;
                        }
                    }
                    // An empty batch ends the run; it allocates nothing.
                    if tx.send(Vec::new()).await.is_err() || started_tx.send(start).is_err() {
                        return;
                    }
                }
            })
            .expect("start the producer executor");
        let consumer = LocalExecutorBuilder::new(consumer_at)
            .name("handoff-consumer")
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let rx = rx.connect().await;
                let mut received = 0u64;
                while let Some(batch) = rx.recv().await {
                    if batch.is_empty() {
                        if done_tx.send((Instant::now(), received)).is_err() {
                            return;
                        }
                        received = 0;
                        continue;
                    }
                    for m in &batch {
                        black_box(m.payload.len());
                    }
                    received += batch.len() as u64;
                }
            })
            .expect("start the consumer executor");
        Rig { runs, started, done, handles: vec![producer, consumer] }
    }

    /// Sends `batches` batches and returns the time from the first send to the end marker.
    fn run(&self, batches: u64, batch_size: usize) -> Duration {
        self.runs.send(batches).expect("producer running");
        let start = self.started.recv().expect("producer running");
        let (end, received) = self.done.recv().expect("consumer running");
        assert_eq!(received, batches * batch_size as u64, "every message arrives");
        end.duration_since(start)
    }

    fn stop(self) {
        drop(self.runs);
        for h in self.handles {
            h.join().expect("executor finished cleanly");
        }
    }
}

fn handoff(c: &mut Criterion) {
    // Printed once: the message's size is most of what crosses the cores.
    println!("handoff: a Message is {} bytes, its Arc allocation {}", size_of::<Message>(), size_of::<Message>() + 16);
    let mut group = c.benchmark_group("handoff");
    for batch_size in [1usize, 16, 256] {
        let rig = Rig::start(batch_size);
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(BenchmarkId::new("batch", batch_size), |b| {
            b.iter_custom(|batches| rig.run(batches, batch_size))
        });
        rig.stop();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = handoff
}
criterion_main!(benches);
